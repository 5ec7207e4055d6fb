"""Fixtures and helpers shared by the age tests."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from gateway import age

CHUNK = 64 * 1024


def data(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (cheap, reproducible failures)."""
    return random.Random(seed).randbytes(size)


def encrypt_bytes(plaintext: bytes, recipients: list, **kwargs: object) -> bytes:
    out = io.BytesIO()
    assert age.encrypt(io.BytesIO(plaintext), out, recipients, **kwargs) == len(plaintext)
    return out.getvalue()


def decrypt_bytes(ciphertext: bytes, identities: list, **kwargs: object) -> bytes:
    out = io.BytesIO()
    n = age.decrypt(io.BytesIO(ciphertext), out, identities, **kwargs)
    assert n == len(out.getvalue())
    return out.getvalue()


class HashSink:
    """A write-only sink that keeps the SHA-256 and length of what it was given."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> int:
        self.hash.update(b)
        self.size += len(b)
        return len(b)


@pytest.fixture(scope="session")
def identity() -> age.X25519Identity:
    return age.X25519Identity.generate()


@pytest.fixture(scope="session")
def recipient(identity: age.X25519Identity) -> age.X25519Recipient:
    return identity.to_recipient()
