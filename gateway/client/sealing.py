"""The age payload, addressable by chunk, for transfers that resume.

Design note. An age v1 file (C2SP age, "Payload" section) is ``header || nonce(16) ||
STREAM``; chunk ``i`` (64 KiB of plaintext, the last one possibly shorter) is sealed
with ChaCha20-Poly1305 under the payload key and the chunk nonce of
:mod:`gateway.age.stream`. Sealing is deterministic given the file key, the nonce and
the chunk index, which is what lets a push resume (the same parts again) and a pull
resume (from any chunk). :func:`gateway.age.stream.seal` and ``open_`` always start
at chunk 0, so this module addresses chunks itself, on the same ``payload_key`` and
``chunk_nonce``; sizes follow the same spec section.
"""

from __future__ import annotations

from gateway.age.stream import CHUNK, NONCE_SIZE, SEALED, TAG, chunk_nonce, payload_key

NONCE = NONCE_SIZE
SEALED_CHUNK = SEALED


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


class Payload:
    """The STREAM of one age file: seal or open chunk ``i`` under the file key and nonce."""

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        if len(file_key) != 16 or len(nonce) != NONCE:
            raise ValueError("an age file key is 16 bytes and the payload nonce 16 bytes")
        self.nonce = nonce
        self._aead = payload_key(file_key, nonce)

    def seal(self, index: int, chunk: bytes | memoryview, last: bool) -> bytes:
        return self._aead.encrypt(chunk_nonce(index, last), chunk, None)

    def open(self, index: int, sealed: bytes | memoryview, last: bool) -> bytes:
        """The plaintext of chunk ``index``; :class:`cryptography.exceptions.InvalidTag` if forged."""
        return self._aead.decrypt(chunk_nonce(index, last), sealed, None)

    def open_into(
        self, index: int, sealed: bytes | memoryview, last: bool, out: memoryview
    ) -> None:
        """:meth:`open` into ``out`` (exactly the plaintext's length), without a copy."""
        self._aead.decrypt_into(chunk_nonce(index, last), sealed, None, out)
