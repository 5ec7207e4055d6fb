"""The age payload: STREAM over ChaCha20-Poly1305 in 64 KiB chunks (C2SP age, "Payload").

Design note. ``payload key = HKDF-SHA-256(ikm = file key, salt = nonce, info = "payload")``;
chunk ``i`` is sealed under the 12-byte nonce ``i`` (11 bytes, big endian) ``||`` ``0x01``
for the final chunk and ``0x00`` otherwise. The final chunk may be short but is empty
only when the whole plaintext is. Decryption refuses a stream without a final chunk
(truncation), a chunk out of place (reordering changes its nonce), data after the final
chunk, an empty final chunk after others, and any altered bit (the AEAD tag). It releases
the plaintext of every chunk that authenticated before the error, exactly as the
reference implementation does (the test vectors' ``payload`` hashes depend on it).

Speed and memory: chunks are processed in batches read with ``readinto`` into buffers
allocated once (``BATCH`` chunks, plus one byte of look-ahead that tells whether a batch
holds the final chunk), sealed or opened with ``encrypt_into`` / ``decrypt_into`` (which
release the GIL) split across a few threads, and handed out as views of one output
buffer. Memory is a few MiB whatever the size of the file. This module sees only
objects with ``readinto``; it never opens a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.age.errors import AgeError, PayloadError

CHUNK = 64 * 1024
TAG = 16
SEALED = CHUNK + TAG
NONCE_SIZE = 16
BATCH = 32
PARALLEL_MIN = 4


class ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def payload_key(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)
    return ChaCha20Poly1305(key)


def chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def fill(src: ReadInto, view: memoryview) -> int:
    """Read into ``view`` until it is full or the source ends; the bytes read."""
    total, size = 0, len(view)
    while total < size:
        n = src.readinto(view[total:])
        if n is None:
            raise AgeError("the source is non-blocking and has no data ready")
        if n == 0:
            break
        total += n
    return total


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _Workers:
    """Runs ``job(start, stop)`` over chunk ranges on the caller's thread and a small pool."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None

    def run(self, count: int, job: Callable[[int, int], int | None]) -> list[int | None]:
        if self.threads == 1 or count < PARALLEL_MIN:
            return [job(0, count)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="age-stream")
        parts = min(self.threads, count)
        bounds = [count * k // parts for k in range(parts + 1)]
        futures: list[Future[int | None]] = [
            self._pool.submit(job, bounds[k], bounds[k + 1]) for k in range(1, parts)
        ]
        first = job(bounds[0], bounds[1])
        return [first] + [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def seal(src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None) -> Iterator[memoryview]:
    """Encrypt everything ``src`` holds; yields views of the ciphertext, valid until the next one."""
    inbuf = bytearray(BATCH * CHUNK + 1)
    outbuf = bytearray(BATCH * SEALED)
    src_view, out_view = memoryview(inbuf), memoryview(outbuf)
    workers = _Workers(threads or default_threads())
    index, carry = 0, 0
    try:
        while True:
            n = carry + fill(src, src_view[carry:])
            final = n <= BATCH * CHUNK
            size = n if final else BATCH * CHUNK
            count = max(1, -(-size // CHUNK)) if final else BATCH

            def job(start: int, stop: int, base: int = index, size: int = size,
                    count: int = count, final: bool = final) -> None:
                for i in range(start, stop):
                    end = min((i + 1) * CHUNK, size)
                    sealed = end - i * CHUNK + TAG
                    aead.encrypt_into(chunk_nonce(base + i, final and i == count - 1),
                                      src_view[i * CHUNK : end], None,
                                      out_view[i * SEALED : i * SEALED + sealed])

            workers.run(count, job)
            yield out_view[: size + count * TAG]
            if final:
                return
            index += count
            inbuf[0] = inbuf[BATCH * CHUNK]
            carry = 1
    finally:
        workers.close()


def open_(src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None) -> Iterator[memoryview]:
    """Decrypt and authenticate the STREAM in ``src``; yields views of the plaintext.

    On a bad stream, yields the plaintext of the chunks that authenticated first, then
    raises PayloadError.
    """
    inbuf = bytearray(BATCH * SEALED + 1)
    outbuf = bytearray(BATCH * CHUNK)
    src_view, out_view = memoryview(inbuf), memoryview(outbuf)
    workers = _Workers(threads or default_threads())
    index, carry = 0, 0
    try:
        while True:
            n = carry + fill(src, src_view[carry:])
            final = n <= BATCH * SEALED
            size = n if final else BATCH * SEALED
            if final and size == 0:
                raise PayloadError("the payload is truncated: it has no final chunk")
            count = -(-size // SEALED)
            lengths = [min(SEALED, size - i * SEALED) for i in range(count)]

            def job(start: int, stop: int, base: int = index, final: bool = final,
                    count: int = count, lengths: list[int] = lengths) -> int | None:
                for i in range(start, stop):
                    try:
                        _open_chunk(aead, src_view[i * SEALED : i * SEALED + lengths[i]],
                                    out_view[i * CHUNK :], base + i, final and i == count - 1)
                    except InvalidTag:
                        return i
                return None

            failed = [f for f in workers.run(count, job) if f is not None]
            if not failed:
                yield out_view[: size - count * TAG]
                if final:
                    return
            else:
                bad = min(failed)
                if bad:
                    yield out_view[: bad * CHUNK]
                yield from _diagnose(aead, src_view[bad * SEALED : bad * SEALED + lengths[bad]],
                                     out_view, index + bad, final and bad == count - 1)
            index += count
            inbuf[0] = inbuf[BATCH * SEALED]
            carry = 1
    finally:
        workers.close()


def _open_chunk(aead: ChaCha20Poly1305, sealed: memoryview, out: memoryview, index: int, last: bool) -> None:
    if len(sealed) < TAG or (len(sealed) == TAG and (index > 0 or not last)):
        raise InvalidTag
    aead.decrypt_into(chunk_nonce(index, last), sealed, None, out[: len(sealed) - TAG])


def _diagnose(aead: ChaCha20Poly1305, sealed: memoryview, out_view: memoryview,
              index: int, last: bool) -> Iterator[memoryview]:
    """Explain a chunk that failed; a full chunk with the other final flag is released first."""
    if len(sealed) < TAG:
        raise PayloadError(f"chunk {index} is truncated")
    if len(sealed) == TAG and index > 0:
        raise PayloadError("the final chunk is empty, which only an empty file may have")
    if len(sealed) == SEALED:
        try:
            aead.decrypt_into(chunk_nonce(index, not last), sealed, None, out_view[:CHUNK])
        except InvalidTag:
            pass
        else:
            yield out_view[:CHUNK]
            if last:
                raise PayloadError("the payload is truncated: it has no final chunk")
            raise PayloadError("data follows the final chunk")
    raise PayloadError(f"chunk {index} does not authenticate: the payload was altered or truncated")
