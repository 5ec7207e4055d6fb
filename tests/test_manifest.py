"""Manifests: canonical bytes, Ed25519 signatures, shape validation, signing key files."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from gateway import manifest as mf

GOOD: dict[str, Any] = {
    "version": 1,
    "upload": "up_123",
    "name": "modèle-7b",
    "kind": "weights",
    "ciphertext": {"size": 1000, "part_size": 8 << 20, "parts_sha256": "ab" * 32},
    "plaintext": {"size": 800, "sha256": "cd" * 32},
}


def test_canonical_json_is_sorted_compact_utf8() -> None:
    raw = mf.canonical_json({"b": 1, "a": {"d": "é", "c": [1, 2]}})
    assert raw == '{"a":{"c":[1,2],"d":"é"},"b":1}'.encode()
    assert mf.canonical_json(dict(reversed(list(GOOD.items())))) == mf.canonical_json(GOOD)
    with pytest.raises(mf.ManifestError):
        mf.canonical_json({"x": float("nan")})
    with pytest.raises(mf.ManifestError):
        mf.canonical_json({"x": b"bytes"})


def test_sign_and_verify() -> None:
    key = mf.generate_signing_key()
    public = mf.public_key_b64(key)
    assert len(base64.b64decode(public)) == 32
    signature = mf.sign(GOOD, key)
    assert len(base64.b64decode(signature)) == 64
    mf.verify_manifest(GOOD, signature, public)
    mf.verify_manifest(copy.deepcopy(GOOD), signature, public)
    # Independent check of the signed bytes with PyNaCl itself.
    key.verify_key.verify(mf.canonical_json(GOOD), base64.b64decode(signature))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(name="other"),
        lambda m: m["plaintext"].update(sha256="ce" * 32),
        lambda m: m["ciphertext"].update(size=1001),
        lambda m: m.update(extra=True),
    ],
)
def test_any_change_breaks_the_signature(change: Any) -> None:
    key = mf.generate_signing_key()
    signature = mf.sign(GOOD, key)
    changed = copy.deepcopy(GOOD)
    change(changed)
    with pytest.raises(mf.SignatureError, match="does not verify"):
        mf.verify_manifest(changed, signature, mf.public_key_b64(key))


def test_signature_under_another_key_or_malformed_is_refused() -> None:
    key, other = mf.generate_signing_key(), mf.generate_signing_key()
    signature = mf.sign(GOOD, key)
    with pytest.raises(mf.SignatureError, match="does not verify"):
        mf.verify_manifest(GOOD, signature, mf.public_key_b64(other))
    with pytest.raises(mf.SignatureError, match="signature"):
        mf.verify_manifest(GOOD, "not base64!", mf.public_key_b64(key))
    with pytest.raises(mf.SignatureError, match="64 bytes"):
        mf.verify_manifest(GOOD, base64.b64encode(b"short").decode(), mf.public_key_b64(key))
    with pytest.raises(mf.SignatureError, match="public_key"):
        mf.verify_manifest(GOOD, signature, base64.b64encode(bytes(31)).decode())
    with pytest.raises(mf.SignatureError):
        mf.verify_manifest(GOOD, None, mf.public_key_b64(key))


def test_valid_manifest_passes() -> None:
    assert mf.validate_manifest(copy.deepcopy(GOOD)) == GOOD
    credential = copy.deepcopy(GOOD)
    credential.update(kind="credential")
    credential["plaintext"]["size"] = 0
    mf.validate_manifest(credential)


def _with(path: str, value: Any) -> dict[str, Any]:
    m = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = m
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return m


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("version", 2, "version"),
        ("version", True, "version"),
        ("version", "1", "version"),
        ("upload", KeyError, "upload"),
        ("upload", "", "upload"),
        ("name", 5, "name"),
        ("kind", "model", "kind"),
        ("ciphertext", [], "ciphertext"),
        ("ciphertext.size", -1, "ciphertext.size"),
        ("ciphertext.size", 1.5, "ciphertext.size"),
        ("ciphertext.size", 10, "ciphertext.size"),  # cannot hold 800 bytes of plaintext
        ("ciphertext.part_size", 0, "ciphertext.part_size"),
        ("ciphertext.parts_sha256", "AB" * 32, "ciphertext.parts_sha256"),
        ("ciphertext.parts_sha256", "ab" * 31, "ciphertext.parts_sha256"),
        ("ciphertext.extra", 1, "ciphertext.extra"),
        ("plaintext.size", None, "plaintext.size"),
        ("plaintext.sha256", KeyError, "plaintext.sha256"),
        ("plaintext.sha256", "zz" * 32, "plaintext.sha256"),
        ("description", "x", "description"),
    ],
)
def test_invalid_manifests_name_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(mf.ManifestError) as err:
        mf.validate_manifest(_with(path, value))
    assert str(err.value).startswith(field + ":")


@pytest.mark.parametrize("bad", [None, [], "manifest", 1])
def test_non_objects_are_refused(bad: Any) -> None:
    with pytest.raises(mf.ManifestError, match="JSON object"):
        mf.validate_manifest(bad)


def test_key_file_round_trip_is_private(tmp_path: Path) -> None:
    key = mf.generate_signing_key()
    path = tmp_path / "signing.key"
    mf.save_signing_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = mf.load_signing_key(path)
    assert bytes(loaded) == bytes(key)
    assert mf.public_key_b64(key) in path.read_text()
    with pytest.raises(mf.SigningKeyFileError, match="already exists"):
        mf.save_signing_key(path, mf.generate_signing_key())
    assert bytes(mf.load_signing_key(path)) == bytes(key)


def test_bad_key_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(mf.SigningKeyFileError, match="no such key file"):
        mf.load_signing_key(tmp_path / "missing")
    loose = tmp_path / "loose.key"
    loose.write_bytes(mf.signing_key_file_bytes(SigningKey.generate()))
    os.chmod(loose, 0o644)
    with pytest.raises(mf.SigningKeyFileError, match="readable by others"):
        mf.load_signing_key(loose)
    for name, content in [
        ("empty", b""),
        ("junk", b"hello\n"),
        ("binary", b"\xff\xfe"),
        ("short", f"{mf.KEY_FILE_TAG} AAAA\n".encode()),
        ("twice", mf.signing_key_file_bytes(SigningKey.generate()) * 2),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        os.chmod(path, 0o600)
        with pytest.raises(mf.SigningKeyFileError, match=name):
            mf.load_signing_key(path)
    with pytest.raises(mf.SigningKeyFileError, match="not a regular file"):
        mf.load_signing_key(tmp_path)


def test_a_string_utf8_cannot_encode_is_a_manifest_error() -> None:
    """JSON may carry a lone surrogate ("\\ud800"); it has no canonical bytes to sign."""
    bad = json.loads(json.dumps({**GOOD, "name": "x"}).replace('"x"', '"\\ud800"'))
    with pytest.raises(mf.ManifestError, match="not plain JSON"):
        mf.validate_manifest(bad)
    with pytest.raises(mf.ManifestError, match="not plain JSON"):
        mf.sign(bad, mf.generate_signing_key())


def test_ciphertext_size_is_checked_with_the_age_payload_arithmetic() -> None:
    def with_sizes(cipher: int, plain: int) -> dict[str, Any]:
        m = copy.deepcopy(GOOD)
        m["ciphertext"]["size"], m["plaintext"]["size"] = cipher, plain
        return m

    for plain in (0, 1, 64 * 1024, 64 * 1024 + 1, 5 * 64 * 1024):
        smallest = 16 + plain + 16 * max(1, -(-plain // (64 * 1024)))
        mf.validate_manifest(with_sizes(smallest, plain))
        with pytest.raises(mf.ManifestError, match="ciphertext.size: too small"):
            mf.validate_manifest(with_sizes(smallest - 1, plain))
