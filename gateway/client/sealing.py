"""The age payload, addressable by chunk, for transfers that resume.

Design note. An age v1 file (C2SP age, "Payload" section) is ``header || nonce(16) ||
STREAM``: the payload key is ``HKDF-SHA-256(ikm=file key, salt=nonce, info="payload")``
and chunk ``i`` (64 KiB of plaintext, the last one possibly shorter, never empty unless
the whole file is) is sealed with ChaCha20-Poly1305 under the 12-byte nonce
``i`` (11 bytes, big-endian) ``||`` ``0x01`` for the last chunk, ``0x00`` otherwise.
Sealing is deterministic given the file key, the nonce and the chunk index, which is
what lets a push resume (the same parts again) and a pull resume (from any chunk).
The primitives are ``cryptography``'s HKDF and ChaCha20Poly1305; headers (stanzas,
MAC) are written and read by :mod:`gateway.age`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK = 64 * 1024
TAG = 16
NONCE = 16
SEALED_CHUNK = CHUNK + TAG


def chunk_count(plaintext_size: int) -> int:
    """How many STREAM chunks a plaintext of this size takes (at least one)."""
    return max(1, -(-plaintext_size // CHUNK))


def payload_size(plaintext_size: int) -> int:
    """Bytes after the header: the nonce, the plaintext and one tag per chunk."""
    return NONCE + plaintext_size + TAG * chunk_count(plaintext_size)


def plaintext_size(payload: int) -> int:
    """The plaintext size a payload of ``payload`` bytes (nonce included) decrypts to."""
    body = payload - NONCE
    if body < TAG:
        raise ValueError("the payload is too short")
    full, rest = divmod(body, SEALED_CHUNK)
    if rest == 0:
        return full * CHUNK
    if rest <= TAG and full > 0:
        raise ValueError("the payload ends inside a tag")
    return full * CHUNK + rest - TAG


def _chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Payload:
    """The STREAM of one age file: seal or open chunk ``i`` under the file key and nonce."""

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        if len(file_key) != 16 or len(nonce) != NONCE:
            raise ValueError("an age file key is 16 bytes and the payload nonce 16 bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)
        self.nonce = nonce
        self._aead = ChaCha20Poly1305(key)

    def seal(self, index: int, chunk: bytes | memoryview, last: bool) -> bytes:
        return self._aead.encrypt(_chunk_nonce(index, last), chunk, None)

    def open(self, index: int, sealed: bytes | memoryview, last: bool) -> bytes:
        """The plaintext of chunk ``index``; :class:`cryptography.exceptions.InvalidTag` if forged."""
        return self._aead.decrypt(_chunk_nonce(index, last), sealed, None)
