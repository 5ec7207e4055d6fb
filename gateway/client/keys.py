"""Private key files: an age identity (evaluators) or an Ed25519 signing key (labs).

Both are created new with mode 0600 and never overwritten
(:func:`gateway.keyfiles.create_secret`). The age identity file has the layout
``age-keygen`` writes, so the standard ``age -d -i FILE`` reads it. The signing key file
is the one :mod:`gateway.manifest` defines.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.client import agehdr
from gateway.clock import rfc3339
from gateway.errors import GatewayError
from gateway.keyfiles import create_secret


class PrivateKeyFileError(GatewayError):
    """A private key file the client cannot create or use."""

    status, slug, title = 400, "key-file", "Key file"


KeyFileError = PrivateKeyFileError  # the former name, kept for existing importers


def create_private(path: Path, data: bytes) -> None:
    """Write a new file readable by its owner only; refuse to replace an existing one."""
    try:
        create_secret(path, data)
    except FileExistsError:
        raise PrivateKeyFileError(f"{path} exists; not overwriting a key") from None


def new_age_identity() -> tuple[bytes, str]:
    """A new X25519 age identity: the file's bytes (as ``age-keygen`` writes them), its recipient."""
    secret, recipient = agehdr.generate_identity()
    created = rfc3339(datetime.now(UTC))
    return f"# created: {created}\n# public key: {recipient}\n{secret}\n".encode(), recipient


def write_age_identity(path: Path) -> str:
    """A new X25519 age identity in ``path``; its recipient (``age1...``)."""
    data, recipient = new_age_identity()
    create_private(path, data)
    return recipient


def write_signing_key(path: Path) -> str:
    """A new Ed25519 signing key in ``path``; its public key (base64)."""
    import gateway.manifest as manifest

    key = manifest.generate_signing_key()
    create_private(path, manifest.signing_key_file_bytes(key))
    return manifest.public_key_b64(key)


def load_signer(path: Path) -> Callable[[dict[str, Any]], str]:
    """A function that signs a manifest with the key in ``path`` (base64 signature)."""
    return load_signing(path)[0]


def load_signing(path: Path) -> tuple[Callable[[dict[str, Any]], str], str]:
    """The signing function of the key in ``path`` and its public key (base64)."""
    import gateway.manifest as manifest

    try:
        key = manifest.load_signing_key(path)
    except (ValueError, KeyError) as exc:
        raise PrivateKeyFileError(f"{path}: not a signing key file ({exc})") from None

    def sign(m: dict[str, Any]) -> str:
        return str(manifest.sign(m, key))

    return sign, manifest.public_key_b64(key)


def public_of(path: Path) -> tuple[str, str]:
    """The kind (``age`` or ``signing``) and public half of an existing private key file."""
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        text = ""
    if "AGE-SECRET-KEY-" in text:
        identities = agehdr.load_identities(path)
        return "age", str(identities[0].to_recipient())
    try:
        return "signing", load_signing(path)[1]
    except PrivateKeyFileError:
        raise PrivateKeyFileError(
            f"{path}: neither an age identity file nor a gateway signing key file"
        ) from None


def fingerprint(public: str) -> str:
    """A short digest of a public key to compare by eye: ``SHA256:`` and 16 base64 digits."""
    digest = hashlib.sha256(public.encode("utf-8")).digest()
    return "SHA256:" + base64.b64encode(digest).decode()[:16]
