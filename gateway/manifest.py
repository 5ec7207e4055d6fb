"""Signed upload manifests: keyed commitments, canonical JSON, Ed25519 signatures, key files.

Design note. A lab binds what it uploaded with a manifest (README, "Formats"):
``{"version": 2, "upload", "name", "kind", "ciphertext": {"size", "part_size",
"parts_sha256"}, "plaintext": {"size", "commitment"}}``, where the plaintext commitment
is an HMAC-SHA-256 under a key derived from the age file key (:func:`plaintext_hasher`),
so only a holder of the file key (the lab, a grantee after decrypting) can check a
guess against it. Version 1 (``"plaintext": {"size", "sha256"}``, an unkeyed digest)
still validates and verifies, for the artifacts made with it. It is signed as canonical JSON
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
import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import SigningKey, VerifyKey

from gateway import canonical
from gateway.age.stream import payload_size
from gateway.canonical import HEX64
from gateway.keyfiles import NotARegularFile, ReadableByOthers, create_secret, read_secret

KINDS = ("weights", "credential")
KEY_FILE_TAG = "gateway-signing-key-v1"
VERSIONS = (1, 2)
FILE_KEY_SIZE = 16  # an age file key (age-encryption.org/v1)
INFO_PLAINTEXT = b"gateway manifest v2 plaintext"
INFO_FILE = b"gateway manifest v2 file"
INFO_ARCHIVE = b"gateway manifest v2 archive"
_FIELDS = ("version", "upload", "name", "kind", "ciphertext", "plaintext")


class Hasher(Protocol):
    """What ``hashlib`` and ``hmac`` objects offer: ``update`` in order, then the digest."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


Commit = Callable[[str], Hasher]
"""A per-file commitment factory: called once per member with its path (``gateway.tree``)."""


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


def derive_key(file_key: bytes, info: bytes) -> bytes:
    """HKDF-SHA-256 (RFC 5869) of the age file key: empty salt, ``info``, 32 bytes.

    The same construction age uses for its header and payload keys; each ``info`` gives
    an independent HMAC key, so a commitment of one kind never stands for another.
    """
    if len(file_key) != FILE_KEY_SIZE:
        raise ManifestError(f"an age file key is {FILE_KEY_SIZE} bytes, not {len(file_key)}")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=info).derive(file_key)


def _hmac(key: bytes) -> Hasher:
    return hmac.new(key, digestmod=hashlib.sha256)


def plaintext_hasher(file_key: bytes) -> Hasher:
    """HMAC-SHA-256 (RFC 2104) under ``derive_key(file_key, INFO_PLAINTEXT)``: feed it the
    plaintext; its hex digest is a single file's ``plaintext.commitment``."""
    return _hmac(derive_key(file_key, INFO_PLAINTEXT))


def file_commit(file_key: bytes) -> Commit:
    """The per-file factory of a directory artifact: ``commit(path)`` is HMAC-SHA-256 under
    ``derive_key(file_key, INFO_FILE)``, already fed the path's UTF-8 bytes after their
    length as 8 bytes big-endian; feed it the file's content. The length prefix makes
    (path, content) one unambiguous message, so a commitment cannot move to another name.
    """
    key = derive_key(file_key, INFO_FILE)

    def commit(path: str) -> Hasher:
        try:
            name = path.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError(f"{path!r}: a path must be valid UTF-8") from None
        hasher = _hmac(key)
        hasher.update(len(name).to_bytes(8, "big"))
        hasher.update(name)
        return hasher

    return commit


def archive_hasher(file_key: bytes) -> Hasher:
    """HMAC-SHA-256 under ``derive_key(file_key, INFO_ARCHIVE)``, for the archive
    transcript (``gateway.tree.commit``); its hex digest is ``plaintext.archive``."""
    return _hmac(derive_key(file_key, INFO_ARCHIVE))


def plaintext_digest(manifest: dict[str, Any]) -> Callable[[bytes], Hasher]:
    """What hashes the decrypted plaintext for ``manifest``, given the file key.

    Version 1: SHA-256 (the key is not used); version 2: :func:`plaintext_hasher`.
    ManifestError for a directory manifest, which is checked file by file instead.
    """
    if manifest.get("version") == 1:
        return lambda file_key: hashlib.sha256()
    if "commitment" not in (manifest.get("plaintext") or {}):
        raise ManifestError("a directory artifact's plaintext is checked file by file")
    return plaintext_hasher


def check_plaintext(manifest: dict[str, Any], size: int, digest: str) -> None:
    """Return if the decrypted plaintext's ``size`` and ``digest`` (hex, from
    :func:`plaintext_digest`'s hasher) are the manifest's; ManifestError says which differs."""
    plain = manifest.get("plaintext") or {}
    if plain.get("size") != size:
        raise ManifestError(
            f"the decrypted file has {size} bytes, the lab's manifest says {plain.get('size')}"
        )
    field = "sha256" if manifest.get("version") == 1 else "commitment"
    expected = plain.get(field)
    if not isinstance(expected, str) or not hmac.compare_digest(expected, digest):
        what = "SHA-256" if field == "sha256" else "keyed commitment"
        raise ManifestError(f"the decrypted file's {what} differs from the lab's signed manifest")


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
    """Check the shape of a version 1 or 2 manifest; ManifestError names the first bad field."""
    m = _object(manifest, "", _FIELDS)
    if type(m["version"]) is not int or m["version"] not in VERSIONS:
        raise ManifestError("version: must be 1 or 2")
    _text(m["upload"], "upload")
    _text(m["name"], "name")
    if m["kind"] not in KINDS:
        raise ManifestError(f"kind: must be one of {', '.join(KINDS)}")
    c = _object(m["ciphertext"], "ciphertext", ("size", "part_size", "parts_sha256"))
    size = _int(c["size"], "ciphertext.size", 1)
    _int(c["part_size"], "ciphertext.part_size", 1)
    _hex(c["parts_sha256"], "ciphertext.parts_sha256")
    if m["version"] == 2:
        plain = _plaintext_v2(m["plaintext"])
    else:
        p = _object(m["plaintext"], "plaintext", ("size", "sha256"))
        plain = _int(p["size"], "plaintext.size", 0)
        _hex(p["sha256"], "plaintext.sha256")
    if size < payload_size(plain):
        raise ManifestError(
            "ciphertext.size: too small to hold an age file of plaintext.size bytes"
        )
    canonical_json(m)
    return m


def _hex(value: object, field: str) -> str:
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise ManifestError(f"{field}: must be 64 lowercase hex digits")
    return value


def _plaintext_v2(value: object) -> int:
    """A version 2 ``plaintext``, ``{size, commitment}`` (a file) or ``{size, archive,
    files}`` (a directory); its size. The request body's size bounds the list."""
    is_tree = isinstance(value, dict) and ("files" in value or "archive" in value)
    p = _object(
        value, "plaintext", ("size", "archive", "files") if is_tree else ("size", "commitment")
    )
    size = _int(p["size"], "plaintext.size", 0)
    if not is_tree:
        _hex(p["commitment"], "plaintext.commitment")
        return size
    _hex(p["archive"], "plaintext.archive")
    if not isinstance(p["files"], list) or not p["files"]:
        raise ManifestError("plaintext.files: must be a non-empty list")
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(p["files"]):
        where = f"plaintext.files[{i}]"
        e = _object(entry, where, ("path", "size", "commitment"))
        path = _text(e["path"], f"{where}.path")
        if "\0" in path or path in seen:
            why = "holds NUL" if "\0" in path else "listed twice"
            raise ManifestError(f"{where}.path: {why}")
        seen.add(path)
        total += _int(e["size"], f"{where}.size", 0)
        _hex(e["commitment"], f"{where}.commitment")
    if total > size:
        raise ManifestError("plaintext.files: the files hold more than plaintext.size bytes")
    return size


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
