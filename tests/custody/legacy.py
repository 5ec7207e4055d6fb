"""Values as the old ``keys/master.key`` wrapped them, for the tests that they still unwrap.

The format (``0x01 || 12-byte nonce || AES-256-GCM``, the upload id as associated data) is
what every wrapped identity stored before migration 0006 is; the gateway no longer makes it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.keyfiles import create_secret


def make_master_key(path: Path) -> bytes:
    """A master key file as ``gateway init`` made it (0600, its directory made if missing)."""
    key = secrets.token_bytes(32)
    create_secret(path, key, parents=True)
    return key


def legacy_wrap(key: bytes, secret: bytes, upload_id: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return b"\x01" + nonce + AESGCM(key).encrypt(nonce, secret, upload_id.encode())
