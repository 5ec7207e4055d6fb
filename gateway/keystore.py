"""The master key that wraps every upload's custody identity (AES-256-GCM).

The key is 32 random bytes in ``keys/master.key`` (mode 0600), created by
``gateway init``. Each wrapped value is ``version byte || 12-byte nonce || ciphertext``
with the upload id as associated data, so a wrapped identity cannot be moved to
another upload. Deleting a wrapped value crypto-shreds what it protected.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import GatewayError
from gateway.keyfiles import NotARegularFile, ReadableByOthers, create_secret, read_secret

WRAP_VERSION = b"\x01"
KEY_SIZE = 32


class KeyStoreError(GatewayError):
    status, slug, title = 500, "key-store", "Key store error"


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` (and its directory) with mode 0600 holding ``data``.

    Never overwrites: FileExistsError if the file exists.
    """
    create_secret(path, data, parents=True)


def read_secret_file(path: Path) -> bytes:
    """Read a key file, refusing one that others can read or that is not a regular file."""
    try:
        return read_secret(path)
    except FileNotFoundError:
        raise KeyStoreError(f"key file {path} not found; run `gateway init`") from None
    except ReadableByOthers:
        raise KeyStoreError(f"key file {path} is readable by others; chmod 600 {path}") from None
    except NotARegularFile:
        raise KeyStoreError(f"key file {path} is not a regular file") from None


class MasterKey:
    """Wraps and unwraps custody identities with the local master key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise KeyStoreError("master key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def create(cls, path: Path) -> None:
        if not path.exists():
            write_secret_file(path, secrets.token_bytes(KEY_SIZE))

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        return cls(read_secret_file(path))

    def wrap(self, secret: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return WRAP_VERSION + nonce + self._aead.encrypt(nonce, secret, context.encode())

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        if len(wrapped) < 1 + 12 + 16 or wrapped[:1] != WRAP_VERSION:
            raise KeyStoreError("wrapped key is malformed")
        try:
            return self._aead.decrypt(wrapped[1:13], wrapped[13:], context.encode())
        except InvalidTag:
            raise KeyStoreError("wrapped key does not open under the master key") from None
