"""The C2SP CCTV age testkit: every vector in ``testdata/age``, read in place.

Each vector must give its expected outcome: success with the expected plaintext hash,
or the expected failure category (as one of this package's exception classes) and, for
``payload failure``, exactly the plaintext the reference releases before the error.
Nothing is skipped: a vector could only be excused if it needed an age plugin, and it
would have to be listed in NEEDS_PLUGIN with the reason.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import age
from gateway.age import stream
from gateway.age.format import encode_header
from tests.age.conftest import HashSink
from tests.vectors import ROOT, vectors_dir

# Vectors this implementation cannot run because they need an age plugin: name -> reason.
# The current testkit has none; any other vector that fails is a test failure.
NEEDS_PLUGIN: dict[str, str] = {}

CATEGORY: dict[str, type[age.AgeError]] = {
    "header failure": age.HeaderError,
    "HMAC failure": age.MacError,
    "no match": age.NoIdentityMatchError,
    "payload failure": age.PayloadError,
    "armor failure": age.ArmorError,
}
KNOWN_KEYS = {
    "expect",
    "payload",
    "identity",
    "passphrase",
    "armored",
    "compressed",
    "file key",
    "comment",
}


def _names() -> list[str]:
    base = Path(os.environ.get("GATEWAY_TEST_VECTORS", ROOT.parent / "shared" / "testdata")) / "age"
    if not base.is_dir():
        return ["<vectors missing>"]
    return sorted(p.name for p in base.iterdir() if p.is_file() and p.name != "README.md")


@dataclass
class Vector:
    name: str
    meta: dict[str, list[str]]
    body: bytes

    @property
    def expect(self) -> str:
        return self.meta["expect"][0]

    def identities(self) -> list[age.Identity]:
        found: list[age.Identity] = [age.parse_identity(s) for s in self.meta.get("identity", [])]
        return found + [age.ScryptIdentity(p) for p in self.meta.get("passphrase", [])]


def load(name: str) -> Vector:
    raw = (vectors_dir("age") / name).read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{name}: no blank line after the vector header"
    meta: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        meta.setdefault(key, []).append(value)
    unknown = set(meta) - KNOWN_KEYS
    assert not unknown, f"{name}: unknown vector keys {unknown}; update the test, do not skip it"
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return Vector(name, meta, body)


@pytest.mark.parametrize("name", _names())
def test_vector(name: str) -> None:
    assert name not in NEEDS_PLUGIN, f"{name} needs a plugin: {NEEDS_PLUGIN.get(name)}"
    v = load(name)
    sink = HashSink()
    if v.expect == "success":
        age.decrypt(io.BytesIO(v.body), sink, v.identities())
    else:
        with pytest.raises(CATEGORY[v.expect]):
            age.decrypt(io.BytesIO(v.body), sink, v.identities())
    if v.expect in ("success", "payload failure"):
        assert sink.hash.hexdigest() == v.meta["payload"][0]


@pytest.mark.parametrize("name", _names())
def test_vector_iter(name: str) -> None:
    """The same outcome through decrypt_iter, fed in odd-sized pieces."""
    v = load(name)
    pieces = [v.body[i : i + 7919] for i in range(0, len(v.body), 7919)]
    sink = HashSink()
    try:
        for piece in age.decrypt_iter(pieces, v.identities()):
            sink.write(piece)
        got = "success"
    except age.AgeError as exc:
        got = next(k for k, cls in CATEGORY.items() if isinstance(exc, cls))
    assert got == v.expect
    if v.expect in ("success", "payload failure"):
        assert sink.hash.hexdigest() == v.meta["payload"][0]


@pytest.mark.parametrize("name", _names())
def test_vector_header_reencodes(name: str) -> None:
    """A header that parses re-serialises to exactly its bytes (binary vectors)."""
    v = load(name)
    if v.meta.get("armored") == ["yes"] or v.expect == "header failure":
        return
    header = age.read_header(io.BytesIO(v.body))
    assert encode_header(header.stanzas, header.mac) == header.raw
    assert v.body.startswith(header.raw)


@pytest.mark.parametrize("name", _names())
def test_vector_payload_reencrypts(name: str) -> None:
    """Success vectors: sealing the plaintext with the vector's file key and nonce gives its payload."""
    v = load(name)
    if v.expect != "success" or v.meta.get("armored") == ["yes"]:
        return
    f = io.BytesIO(v.body)
    header = age.read_header(f)
    nonce = f.read(16)
    payload = f.read()
    file_key = bytes.fromhex(v.meta["file key"][0])
    assert age.unwrap_file_key(header, v.identities()) == file_key
    plaintext = io.BytesIO()
    age.decrypt(io.BytesIO(v.body), plaintext, v.identities())
    key = stream.payload_key(file_key, nonce)
    sealed = b"".join(bytes(p) for p in stream.seal(io.BytesIO(plaintext.getvalue()), key))
    assert sealed == payload


@pytest.mark.parametrize("name", _names())
def test_vector_from_a_regular_file(name: str, tmp_path: Path) -> None:
    """The same outcome when the payload is read from a file by position (the fast path)."""
    v = load(name)
    path = tmp_path / "vector.age"
    path.write_bytes(v.body)
    sink = HashSink()
    with open(path, "rb") as f:
        try:
            age.decrypt(f, sink, v.identities())
            got = "success"
        except age.AgeError as exc:
            got = next(k for k, cls in CATEGORY.items() if isinstance(exc, cls))
    assert got == v.expect
    if v.expect in ("success", "payload failure"):
        assert sink.hash.hexdigest() == v.meta["payload"][0]
