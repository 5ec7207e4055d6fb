"""The header: exact parse and write, position after reading, hostile sizes."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import age
from gateway.age.format import MAX_STANZAS, Stanza, b64decode, encode_header, write_header
from tests.age.conftest import encrypt_bytes

FILE_KEY = bytes(range(16))


def _header(*stanzas: Stanza) -> bytes:
    return write_header(list(stanzas), FILE_KEY)


def test_read_header_leaves_the_file_at_the_payload(recipient: age.X25519Recipient) -> None:
    data = encrypt_bytes(b"payload", [recipient])
    f = io.BytesIO(data)
    header = age.read_header(f)
    assert f.tell() == len(header.raw)
    assert data.startswith(header.raw)
    assert header.raw.endswith(b"\n") and header.raw.startswith(b"age-encryption.org/v1\n")
    assert [s.type for s in header.stanzas] == ["X25519"]
    assert len(header.mac) == 32
    assert age.parse_header(data) == header


def test_read_header_over_a_source_with_only_read(recipient: age.X25519Recipient) -> None:
    data = encrypt_bytes(b"x", [recipient])

    class OnlyRead:
        def __init__(self) -> None:
            self.f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self.f.read(n)

    src = OnlyRead()
    header = age.read_header(src)
    assert src.f.tell() == len(header.raw)


@pytest.mark.parametrize("body_len", [0, 1, 47, 48, 49, 96, 200])
def test_stanza_bodies_wrap_at_64_columns_and_round_trip(body_len: int) -> None:
    stanza = Stanza(
        "example.com/test",
        ("a", "b!"),
        bytes(range(body_len % 256)) * (body_len // 256) + bytes(body_len % 256),
    )
    raw = _header(stanza)
    lines = raw.split(b"\n")
    body_lines = lines[2:-2]
    assert all(len(line) == 64 for line in body_lines[:-1])
    assert len(body_lines[-1]) < 64
    header = age.parse_header(raw)
    assert header.stanzas == (stanza,)
    assert encode_header(header.stanzas, header.mac) == raw


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"age-encryption.org/v1\n",
        b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n",  # no stanza
        b"age-encryption.org/v1\n-> X25519\n\n--- " + b"A" * 43,  # no final newline
        b"age-encryption.org/v1\n-> X25519  a\n\n--- " + b"A" * 43 + b"\n",  # empty argument
        b"age-encryption.org/v1\n-> X25519 a\nAAAA=\n--- " + b"A" * 43 + b"\n",  # padding
        b"age-encryption.org/v1\n-> X25519 a\n\n---" + b"A" * 43 + b"\n",  # no space
        b"age-encryption.org/v1\n-> X25519 a\n\n--- " + b"A" * 42 + b"\n",  # short MAC
        b"age-encryption.org/v1\r\n-> X25519 a\n\n--- " + b"A" * 43 + b"\n",  # CRLF
        b"age-encryption.org/v1\n-> X25519 \xff\n\n--- " + b"A" * 43 + b"\n",  # non-ASCII
        b"AGE-ENCRYPTION.ORG/V1\n",
    ],
)
def test_malformed_headers_are_header_errors(raw: bytes) -> None:
    with pytest.raises(age.HeaderError):
        age.parse_header(raw)


def test_other_versions_are_unsupported() -> None:
    with pytest.raises(age.UnsupportedError, match="v2"):
        age.parse_header(b"age-encryption.org/v2\n-> X 1\n\n")


def test_header_size_is_capped() -> None:
    stanza = Stanza("big", (), bytes(10_000))
    raw = _header(stanza)
    assert age.read_header(io.BytesIO(raw), max_size=len(raw)).raw == raw
    with pytest.raises(age.HeaderError, match="limit"):
        age.read_header(io.BytesIO(raw), max_size=len(raw) - 1)
    endless = io.BytesIO(b"age-encryption.org/v1\n-> x\n" + b"A" * 64 * 100_000)
    with pytest.raises(age.HeaderError, match="limit"):
        age.read_header(endless, max_size=1 << 16)
    assert endless.tell() <= (1 << 16) + 1


def test_stanza_count_is_capped() -> None:
    many = [Stanza("x", (), b"")] * (MAX_STANZAS + 1)
    raw = (
        b"age-encryption.org/v1\n"
        + b"".join(s.encode() for s in many)
        + b"--- "
        + b"A" * 43
        + b"\n"
    )
    with pytest.raises(age.HeaderError, match="stanzas"):
        age.parse_header(raw)


def test_base64_must_be_canonical() -> None:
    assert b64decode("AAE") == b"\x00\x01"
    for bad in ("AAF", "AAE=", "A", "AA E", "AA-_"):
        with pytest.raises(age.HeaderError):
            b64decode(bad)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(age.HeaderError):
        age.parse_header(b"age-encryption.org/v1\n" + data)


@settings(max_examples=200)
@given(st.data())
def test_mutated_headers_parse_or_fail_cleanly(data: st.DataObject) -> None:
    raw = bytearray(
        _header(Stanza("X25519", ("c2hhcmU",), bytes(32)), Stanza("other", ("1", "2"), bytes(70)))
    )
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    try:
        header = age.parse_header(bytes(raw))
    except age.HeaderError:
        return
    assert encode_header(header.stanzas, header.mac) == header.raw
