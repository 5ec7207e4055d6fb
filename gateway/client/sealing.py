"""The age payload of one push or pull, addressable by chunk, for transfers that resume.

Design note. An age v1 file (C2SP age, "Payload") is ``header || nonce(16) || STREAM``.
Sealing is deterministic given the file key, the nonce and the chunk index, which is what
lets a push resume (the same parts again) and a pull resume (from any chunk). Everything
here is :mod:`gateway.age.stream`: its sizes and arithmetic, re-exported under the names
the client uses, and its STREAM, which starts at any chunk (``start_chunk``), so a
transfer that resumes mid-file seals or opens from there with the same code as a whole
file. :class:`Payload` binds a file key and nonce to it.
"""

from __future__ import annotations

from gateway.age import stream
from gateway.age.stream import (
    CHUNK,
    FILE_KEY_SIZE,
    NONCE_SIZE,
    SEALED,
    TAG,
    ReadInto,
    chunk_count,
    payload_size,
    plaintext_size,
    sealed_offset,
)

__all__ = [
    "CHUNK",
    "NONCE",
    "SEALED_CHUNK",
    "TAG",
    "Payload",
    "chunk_count",
    "payload_size",
    "plaintext_size",
    "sealed_offset",
]

NONCE = NONCE_SIZE
SEALED_CHUNK = SEALED


class Payload:
    """The STREAM of one age file under its file key and nonce, from any chunk."""

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        if len(file_key) != FILE_KEY_SIZE or len(nonce) != NONCE:
            raise ValueError("an age file key is 16 bytes and the payload nonce 16 bytes")
        self.nonce = nonce
        self._aead = stream.payload_key(file_key, nonce)

    def seal_from(
        self, src: ReadInto, start_chunk: int = 0, threads: int | None = None
    ) -> stream.Pieces:
        """Seal the plaintext in ``src``, which starts at chunk ``start_chunk``.

        Yields views of the ciphertext (each valid until the next), byte for byte the
        part of the whole file's payload from ``sealed_offset(start_chunk)`` on.
        """
        return stream.seal(src, self._aead, threads, start_chunk=start_chunk)

    def unseal_from(
        self, src: ReadInto, start_chunk: int = 0, threads: int | None = None
    ) -> stream.Pieces:
        """Open the STREAM in ``src``, which starts at chunk ``start_chunk``, as it authenticates.

        On a bad stream, yields what authenticated, then raises PayloadError.
        """
        return stream.unseal(src, self._aead, threads, start_chunk=start_chunk)

    def seal(self, index: int, chunk: bytes | memoryview, last: bool) -> bytes:
        """Chunk ``index`` sealed, for callers that place each chunk themselves."""
        return stream.seal_chunk(self._aead, index, chunk, last)

    def open(self, index: int, sealed: bytes | memoryview, last: bool) -> bytes:
        """The plaintext of chunk ``index``; :class:`cryptography.exceptions.InvalidTag` if forged."""
        out = bytearray(max(0, len(sealed) - TAG))
        stream.unseal_chunk(self._aead, index, sealed, last, memoryview(out))
        return bytes(out)

    def open_into(
        self, index: int, sealed: bytes | memoryview, last: bool, out: memoryview
    ) -> None:
        """:meth:`open` into ``out`` (exactly the plaintext's length), without a copy."""
        stream.unseal_chunk(self._aead, index, sealed, last, out)
