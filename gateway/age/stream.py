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


Waiter = Callable[[], list[int | None]]


class _Workers:
    """Runs ``job(start, stop)`` over a batch's chunk ranges on a small thread pool.

    The calling thread is then free to read the next batch while this one is processed.
    ``threads=0`` (or a batch too small to be worth it) runs the job inline.
    """

    def __init__(self, threads: int | None) -> None:
        self.threads = default_threads() if threads is None else max(0, threads)
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, count: int, job: Callable[[int, int], int | None]) -> Waiter:
        if self.threads == 0 or count < PARALLEL_MIN:
            result = [job(0, count)]
            return lambda: result
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="age-stream")
        parts = min(self.threads, count)
        bounds = [count * k // parts for k in range(parts + 1)]
        futures: list[Future[int | None]] = [
            self._pool.submit(job, bounds[k], bounds[k + 1]) for k in range(parts)
        ]
        return lambda: [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _buffers(in_size: int, out_size: int) -> tuple[list[bytearray], list[memoryview], list[memoryview]]:
    ins = [bytearray(in_size + 1) for _ in range(2)]
    outs = [bytearray(out_size) for _ in range(2)]
    return ins, [memoryview(b) for b in ins], [memoryview(b) for b in outs]


def _seal_shape(n: int) -> tuple[bool, int, int]:
    """(final, plaintext bytes, chunks) of a batch holding ``n`` bytes (one of look-ahead)."""
    if n > BATCH * CHUNK:
        return False, BATCH * CHUNK, BATCH
    return True, n, max(1, -(-n // CHUNK))


def _seal_job(aead: ChaCha20Poly1305, src: memoryview, out: memoryview, base: int,
              shape: tuple[bool, int, int]) -> Callable[[int, int], None]:
    final, size, count = shape

    def job(start: int, stop: int) -> None:
        for i in range(start, stop):
            end = min((i + 1) * CHUNK, size)
            sealed = end - i * CHUNK + TAG
            aead.encrypt_into(chunk_nonce(base + i, final and i == count - 1), src[i * CHUNK : end],
                              None, out[i * SEALED : i * SEALED + sealed])

    return job


def seal(src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None) -> Iterator[memoryview]:
    """Encrypt everything ``src`` holds; yields views of the ciphertext, valid until the next one.

    While one batch is sealed on the pool, the next is read; while the caller writes a
    batch out, the next is sealed.
    """
    ins, vin, vout = _buffers(BATCH * CHUNK, BATCH * SEALED)
    workers = _Workers(threads)
    try:
        cur, index = 0, 0
        shape = _seal_shape(fill(src, vin[0]))
        wait = workers.submit(shape[2], _seal_job(aead, vin[0], vout[0], index, shape))
        while True:
            final, size, count = shape
            if not final:
                ins[1 - cur][0] = ins[cur][BATCH * CHUNK]
                following = 1 + fill(src, vin[1 - cur][1:])
            wait()
            done = vout[cur][: size + count * TAG]
            if final:
                yield done
                return
            index, cur = index + count, 1 - cur
            shape = _seal_shape(following)
            wait = workers.submit(shape[2], _seal_job(aead, vin[cur], vout[cur], index, shape))
            yield done
    finally:
        workers.close()


def _open_shape(n: int) -> tuple[bool, int, list[int]]:
    """(final, ciphertext bytes, length of each sealed chunk) of a batch holding ``n`` bytes."""
    final = n <= BATCH * SEALED
    size = n if final else BATCH * SEALED
    count = -(-size // SEALED)
    return final, size, [min(SEALED, size - i * SEALED) for i in range(count)]


def _open_job(aead: ChaCha20Poly1305, src: memoryview, out: memoryview, base: int,
              shape: tuple[bool, int, list[int]]) -> Callable[[int, int], int | None]:
    final, _, lengths = shape
    count = len(lengths)

    def job(start: int, stop: int) -> int | None:
        for i in range(start, stop):
            try:
                _open_chunk(aead, src[i * SEALED : i * SEALED + lengths[i]], out[i * CHUNK :],
                            base + i, final and i == count - 1)
            except InvalidTag:
                return i
        return None

    return job


def open_(src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None) -> Iterator[memoryview]:
    """Decrypt and authenticate the STREAM in ``src``; yields views of the plaintext.

    On a bad stream, yields the plaintext of the chunks that authenticated first, then
    raises PayloadError. Reading, opening and the caller's writing overlap as in seal.
    """
    ins, vin, vout = _buffers(BATCH * SEALED, BATCH * CHUNK)
    workers = _Workers(threads)
    try:
        cur, index = 0, 0
        shape = _open_shape(fill(src, vin[0]))
        if shape[1] == 0:
            raise PayloadError("the payload is truncated: it has no chunk")
        wait = workers.submit(len(shape[2]), _open_job(aead, vin[0], vout[0], index, shape))
        while True:
            final, size, lengths = shape
            if not final:
                ins[1 - cur][0] = ins[cur][BATCH * SEALED]
                following = 1 + fill(src, vin[1 - cur][1:])
            failed = [f for f in wait() if f is not None]
            if failed:
                bad = min(failed)
                if bad:
                    yield vout[cur][: bad * CHUNK]
                sealed = vin[cur][bad * SEALED : bad * SEALED + lengths[bad]]
                yield from _diagnose(aead, sealed, vout[cur], index + bad, final and bad == len(lengths) - 1)
            done = vout[cur][: size - len(lengths) * TAG]
            if final:
                yield done
                return
            index, cur = index + len(lengths), 1 - cur
            shape = _open_shape(following)
            if shape[1] == 0:
                yield done
                raise PayloadError("the payload is truncated: it has no final chunk")
            wait = workers.submit(len(shape[2]), _open_job(aead, vin[cur], vout[cur], index, shape))
            yield done
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
