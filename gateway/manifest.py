"""Signed upload manifests: canonical JSON, Ed25519 signatures, signing key files.

Design note. A lab binds what it uploaded with a manifest (README, "Formats"):
``{"version": 1, "upload", "name", "kind", "ciphertext": {"size", "part_size",
"parts_sha256"}, "plaintext": {"size", "sha256"}}``. It is signed as canonical JSON
(:func:`gateway.canonical.canonical_json`: sorted keys, no whitespace, UTF-8, no NaN)
with Ed25519 (RFC 8032, through PyNaCl); signatures and public keys travel as standard
base64. ``validate_manifest`` checks the shape and names the first bad field; the
gateway then compares the values with the upload, the evaluator's client with the
plaintext it decrypted. A lab's signing key lives in a small text file, created 0600
and never overwritten, and refused when others can read it (:mod:`gateway.keyfiles`).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import SigningKey, VerifyKey

from gateway import canonical
from gateway.age.stream import payload_size
from gateway.canonical import HEX64
from gateway.keyfiles import NotARegularFile, ReadableByOthers, create_secret, read_secret

KINDS = ("weights", "credential")
KEY_FILE_TAG = "gateway-signing-key-v1"
_FIELDS = {
    "version": None,
    "upload": None,
    "name": None,
    "kind": None,
    "ciphertext": ("size", "part_size", "parts_sha256"),
    "plaintext": ("size", "sha256"),
}


class ManifestError(ValueError):
    """A manifest, signature or key file is not what it must be; the message names the field."""


class SignatureError(ManifestError):
    """The signature is malformed or does not verify under the public key."""


class SigningKeyFileError(ManifestError):
    """A signing key file is missing, unreadable, too permissive or malformed."""


def canonical_json(manifest: object) -> bytes:
    """The exact bytes that are signed (:func:`gateway.canonical.canonical_json`).

    ManifestError when the value has no canonical form (bytes, NaN, a lone surrogate).
    """
    try:
        return canonical.canonical_json(manifest)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"the manifest is not plain JSON: {exc}") from None


def _int(value: object, field: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ManifestError(f"{field}: must be an integer of at least {minimum}")
    return value


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{field}: must be a non-empty string")
    return value


def _object(manifest: object, field: str, keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    where = f"{field}: " if field else ""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where or 'the manifest: '}must be a JSON object")
    for key in keys:
        if key not in manifest:
            raise ManifestError(f"{field + '.' if field else ''}{key}: missing")
    for key in manifest:
        if key not in keys:
            raise ManifestError(f"{field + '.' if field else ''}{key}: unknown field")
    return manifest


def validate_manifest(manifest: object) -> dict[str, Any]:
    """Check the shape of a version 1 manifest; ManifestError names the first bad field."""
    m = _object(manifest, "", list(_FIELDS))
    if type(m["version"]) is not int or m["version"] != 1:
        raise ManifestError("version: must be 1")
    _text(m["upload"], "upload")
    _text(m["name"], "name")
    if m["kind"] not in KINDS:
        raise ManifestError(f"kind: must be one of {', '.join(KINDS)}")
    c = _object(m["ciphertext"], "ciphertext", ("size", "part_size", "parts_sha256"))
    size = _int(c["size"], "ciphertext.size", 1)
    _int(c["part_size"], "ciphertext.part_size", 1)
    if not isinstance(c["parts_sha256"], str) or not HEX64.fullmatch(c["parts_sha256"]):
        raise ManifestError("ciphertext.parts_sha256: must be 64 lowercase hex digits")
    p = _object(m["plaintext"], "plaintext", ("size", "sha256"))
    plain = _int(p["size"], "plaintext.size", 0)
    if not isinstance(p["sha256"], str) or not HEX64.fullmatch(p["sha256"]):
        raise ManifestError("plaintext.sha256: must be 64 lowercase hex digits")
    if size < payload_size(plain):
        raise ManifestError(
            "ciphertext.size: too small to hold an age file of plaintext.size bytes"
        )
    canonical_json(m)
    return m


def _b64(text: object, what: str, size: int, error: type[ManifestError]) -> bytes:
    if not isinstance(text, str):
        raise error(f"{what}: must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what}: not standard base64") from None
    if len(raw) != size:
        raise error(f"{what}: must be {size} bytes, not {len(raw)}")
    return raw


def generate_signing_key() -> SigningKey:
    return SigningKey.generate()


def public_key_b64(key: SigningKey) -> str:
    """The public key as registered with ``PUT /v1/me/signing-key``: base64 of 32 bytes."""
    return base64.b64encode(bytes(key.verify_key)).decode()


def parse_public_key(text: object) -> VerifyKey:
    """An Ed25519 public key from its base64 form; SignatureError if malformed."""
    return VerifyKey(_b64(text, "public_key", 32, SignatureError))


def sign(manifest: object, key: SigningKey) -> str:
    """The base64 Ed25519 signature of the canonical manifest."""
    return base64.b64encode(key.sign(canonical_json(manifest)).signature).decode()


def verify_manifest(manifest: object, signature: object, public_key: object) -> None:
    """Return if ``signature`` (base64) signs the canonical ``manifest`` under ``public_key``."""
    verify_key = parse_public_key(public_key)
    raw = _b64(signature, "signature", 64, SignatureError)
    try:
        verify_key.verify(canonical_json(manifest), raw)
    except (BadSignatureError, NaclValueError):
        raise SignatureError("signature: does not verify under the public key") from None


def signing_key_file_bytes(key: SigningKey) -> bytes:
    """The text of a signing key file (keep it 0600)."""
    seed = base64.b64encode(bytes(key)).decode()
    return (
        f"# Ed25519 manifest signing key; keep it secret\n"
        f"# public key: {public_key_b64(key)}\n{KEY_FILE_TAG} {seed}\n"
    ).encode()


def parse_signing_key(data: bytes) -> SigningKey:
    """The key in the text of a signing key file; SigningKeyFileError if malformed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SigningKeyFileError("not a signing key file (not UTF-8 text)") from None
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    if len(lines) != 1 or not lines[0].startswith(KEY_FILE_TAG + " "):
        raise SigningKeyFileError(
            f"not a signing key file (expected one line '{KEY_FILE_TAG} <base64 seed>')"
        )
    return SigningKey(
        _b64(lines[0][len(KEY_FILE_TAG) + 1 :].strip(), "signing key", 32, SigningKeyFileError)
    )


def save_signing_key(path: str | os.PathLike[str], key: SigningKey) -> None:
    """Write a new key file, mode 0600; SigningKeyFileError if ``path`` exists."""
    try:
        create_secret(Path(path), signing_key_file_bytes(key))
    except FileExistsError:
        raise SigningKeyFileError(f"{path}: already exists; not overwriting a key") from None
    except OSError as exc:
        raise SigningKeyFileError(f"{path}: cannot create: {exc.strerror}") from None


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """Read a key file; SigningKeyFileError when missing, readable by others, or malformed."""
    p = Path(path)
    try:
        data = read_secret(p)
    except NotARegularFile:
        raise SigningKeyFileError(f"{p}: not a regular file") from None
    except ReadableByOthers as exc:
        raise SigningKeyFileError(
            f"{p}: readable by others (mode {exc.mode:o}); chmod 600 it"
        ) from None
    except FileNotFoundError:
        raise SigningKeyFileError(f"{p}: no such key file") from None
    except OSError as exc:
        raise SigningKeyFileError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        return parse_signing_key(data)
    except SigningKeyFileError as exc:
        raise SigningKeyFileError(f"{p}: {exc}") from None
