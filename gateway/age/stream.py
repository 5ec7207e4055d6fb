"""The age payload: STREAM over ChaCha20-Poly1305 in 64 KiB chunks (C2SP age, "Payload").

Design note. ``payload key = HKDF-SHA-256(ikm = file key, salt = nonce, info = "payload")``;
chunk ``i`` is sealed under the 12-byte nonce ``i`` (11 bytes, big endian) ``||`` ``0x01``
for the final chunk and ``0x00`` otherwise. The final chunk may be short but is empty
only when the whole plaintext is. Decryption refuses a stream without a final chunk
(truncation), a chunk out of place (reordering changes its nonce), data after the final
chunk, an empty final chunk after others, and any altered bit (the AEAD tag). It releases
the plaintext of every chunk that authenticated before the error, exactly as the
reference implementation does (the test vectors' ``payload`` hashes depend on it).

Speed and memory: chunks are processed in batches of ``BATCH`` chunks (1 MiB), each a
job on a queue served by a few persistent worker threads, sealed or opened with
``encrypt_into`` / ``decrypt_into`` (which release the GIL) into one of a ring of output
buffers allocated once (one per slot, ``threads + 2`` slots), and handed out in order as
views of it. Later batches are queued while earlier ones run, so a worker never waits
for another to finish its part of a batch, and while the caller writes one batch out
the next ones are processed. A stream is read with ``readinto`` into the slot's input
buffer (with one byte of look-ahead that tells whether a batch holds the final chunk).
A regular file, given as a descriptor, offset and size, is instead read by the worker
threads themselves with ``os.preadv``. To encrypt, a worker reads a whole batch with one
call straight into its place in the output buffer (a 16-byte gap left after each chunk
for its tag) and seals every chunk there in place (``encrypt_into`` over exactly the
same memory, which OpenSSL supports and a test pins), so the plaintext is copied once, by
the kernel, and the batch costs one system call; to decrypt, a worker reads a batch with
one call into its slot's input buffer, as the stream path does. One call per batch
rather than per chunk matters: each call releases and takes back the GIL, which the
workers would otherwise hand to each other tens of thousands of times per GiB. Memory is
a few MiB whatever the size of the file. This module never opens a file.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator
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
BATCH = 16


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
    """Worker threads: one per CPU this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


Job = Callable[[], int | None]


class _Pool:
    """Worker threads that run queued jobs, each filling one of a ring of output slots.

    Jobs of later slots are queued while earlier ones run, so a worker that finishes
    takes the next job at once: no batch waits for its slowest part. A slot's lock is
    held from ``submit`` until its job is done; ``wait`` takes it back, in slot order.
    ``threads=0``, or ``inline``, runs the job in the calling thread instead.
    """

    def __init__(self, threads: int | None) -> None:
        self.threads = default_threads() if threads is None else max(0, threads)
        self.slots = self.threads + 2
        self._jobs: queue.SimpleQueue[tuple[int, Job] | None] = queue.SimpleQueue()
        self._done = [threading.Lock() for _ in range(self.slots)]
        for lock in self._done:
            lock.acquire()
        self._results: list[int | None | BaseException] = [None] * self.slots
        self._workers: list[threading.Thread] = []

    def submit(self, slot: int, job: Job, inline: bool = False) -> None:
        if self.threads == 0 or inline:
            self._finish(slot, job)
            return
        if not self._workers:
            self._workers = [
                threading.Thread(target=self._work, name="age-stream", daemon=True)
                for _ in range(self.threads)
            ]
            for worker in self._workers:
                worker.start()
        self._jobs.put((slot, job))

    def wait(self, slot: int) -> int | None:
        """The result of the job submitted to ``slot`` (it raises what the job raised)."""
        self._done[slot].acquire()
        result = self._results[slot]
        if isinstance(result, BaseException):
            self._results[slot] = None
            raise result
        return result

    def _finish(self, slot: int, job: Job) -> None:
        try:
            self._results[slot] = job()
        except BaseException as e:  # handed to the thread that waits for the slot
            self._results[slot] = e
        self._done[slot].release()

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            self._finish(*item)

    def close(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()
        self._workers = []


Getter = Callable[[int, int], memoryview]
Loader = Callable[[int], None]  # reads a batch of the given size where the getter finds it


class _StreamInput:
    """Batches read from a ``readinto`` source, one input buffer per slot."""

    def __init__(self, src: ReadInto, unit: int, slots: int) -> None:
        self._src, self._size = src, BATCH * unit
        self._bufs = [bytearray(self._size + 1) for _ in range(slots)]
        self._views = [memoryview(b) for b in self._bufs]
        self._prev, self._carry = 0, 0

    def next_batch(self, slot: int) -> tuple[int, Getter, Loader | None]:
        """Bytes available (a batch and one more if the stream goes on), chunk getter, no loader."""
        if self._carry:
            self._bufs[slot][0] = self._bufs[self._prev][self._size]
        self._prev = slot
        n = self._carry + fill(self._src, self._views[slot][self._carry :])
        self._carry = 1 if n > self._size else 0
        view = self._views[slot]
        unit = self._size // BATCH
        return n, lambda i, length: view[i * unit : i * unit + length], None


class _FileInput:
    """Batches of a regular file, each read with one pread by the worker that processes it."""

    def __init__(self, fd: int, offset: int, size: int, unit: int, slots: int) -> None:
        self._fd, self._offset, self._end, self._unit = fd, offset, offset + size, unit
        self._views = [memoryview(bytearray(BATCH * unit)) for _ in range(slots)]

    def next_batch(self, slot: int) -> tuple[int, Getter, Loader]:
        base = self._offset
        n = min(self._end - base, BATCH * self._unit + 1)
        self._offset = min(self._end, base + BATCH * self._unit)
        view, unit, fd = self._views[slot], self._unit, self._fd

        def load(size: int) -> None:
            if size:
                _pread_full(fd, [view[:size]], base, size)

        return n, lambda i, length: view[i * unit : i * unit + length], load


Input = _StreamInput | _FileInput


Shape = tuple[bool, int, int]  # (final, plaintext bytes, chunks) of a batch to seal


def _pread_full(fd: int, views: list[memoryview], offset: int, size: int) -> None:
    """Fill ``views`` (``size`` bytes in all) from ``fd`` at ``offset``, short reads resumed."""
    got = os.preadv(fd, views, offset)
    if got == size:
        return
    for view in views:
        done = min(got, len(view))
        got -= done
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise AgeError("the file changed size while it was being read")
            done += n
        offset += len(view)


def _seal_shape(n: int) -> Shape:
    """(final, plaintext bytes, chunks) of a batch holding ``n`` bytes (one of look-ahead)."""
    if n > BATCH * CHUNK:
        return False, BATCH * CHUNK, BATCH
    return True, n, max(1, -(-n // CHUNK))


def _seal_job(aead: ChaCha20Poly1305, get: Getter, out: memoryview, base: int, shape: Shape) -> Job:
    final, size, count = shape

    def job() -> None:
        seal_into = aead.encrypt_into
        for i in range(count):
            length = min(CHUNK, size - i * CHUNK)
            seal_into(
                chunk_nonce(base + i, final and i == count - 1),
                get(i, length),
                None,
                out[i * SEALED : i * SEALED + length + TAG],
            )

    return job


Batches = Callable[[int, memoryview, int], tuple[Shape, Job]]


def seal(
    src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None
) -> Generator[memoryview, None, None]:
    """Encrypt everything ``src`` holds; yields views of the ciphertext, valid until the next one."""
    pool = _Pool(threads)
    inp = _StreamInput(src, CHUNK, pool.slots)

    def batch(slot: int, out: memoryview, index: int) -> tuple[Shape, Job]:
        n, get, _ = inp.next_batch(slot)
        shape = _seal_shape(n)
        return shape, _seal_job(aead, get, out, index, shape)

    return _seal(batch, pool)


def seal_file(
    fd: int, offset: int, size: int, aead: ChaCha20Poly1305, threads: int | None = None
) -> Generator[memoryview, None, None]:
    """Encrypt ``size`` bytes of the regular file ``fd`` from ``offset``, as ``seal``.

    A file that shrinks below ``offset + size`` while it is read raises AgeError.
    """
    return _seal(_FileSeal(fd, offset, size, aead).batch, _Pool(threads))


class _FileSeal:
    """Batches of a regular file, each read by its job into the output slot and sealed there."""

    def __init__(self, fd: int, offset: int, size: int, aead: ChaCha20Poly1305) -> None:
        self._fd, self._pos, self._end = fd, offset, offset + size
        self._seal_into = aead.encrypt_into
        self._views: dict[int, tuple[list[memoryview], list[memoryview]]] = {}

    def _slot_views(
        self, slot: int, out: memoryview, size: int, count: int
    ) -> tuple[list[memoryview], list[memoryview]]:
        """(plaintext view, sealed view) of each chunk of a batch in ``out``; full ones cached."""
        full = count == BATCH and size == BATCH * CHUNK
        if full and slot in self._views:
            return self._views[slot]
        lengths = [min(CHUNK, size - i * CHUNK) for i in range(count)]
        views = (
            [out[i * SEALED : i * SEALED + n] for i, n in enumerate(lengths)],
            [out[i * SEALED : i * SEALED + n + TAG] for i, n in enumerate(lengths)],
        )
        if full:
            self._views[slot] = views
        return views

    def batch(self, slot: int, out: memoryview, index: int) -> tuple[Shape, Job]:
        pos = self._pos
        shape = final, size, count = _seal_shape(min(self._end - pos, BATCH * CHUNK + 1))
        self._pos += size
        plain, sealed = self._slot_views(slot, out, size, count)
        fd, seal_into = self._fd, self._seal_into

        def job() -> None:
            if size:
                _pread_full(fd, plain, pos, size)
            nonce = index << 8  # chunk_nonce(index + i, last) as a 96-bit integer
            last = count - 1 if final else -1
            for i in range(count):
                seal_into((nonce | (i == last)).to_bytes(12, "big"), plain[i], None, sealed[i])
                nonce += 256

        return shape, job


def _seal(batches: Batches, pool: _Pool) -> Generator[memoryview, None, None]:
    outs = [memoryview(bytearray(BATCH * SEALED)) for _ in range(pool.slots)]
    try:
        pending: deque[tuple[int, int]] = deque()
        index, final, slot = 0, False, 0
        while True:
            while not final and len(pending) < pool.slots:
                s = (slot + len(pending)) % pool.slots
                (final, size, count), job = batches(s, outs[s], index)
                pool.submit(s, job, inline=final and index == 0)
                index += count
                pending.append((size, count))
            size, count = pending.popleft()
            pool.wait(slot)
            yield outs[slot][: size + count * TAG]
            if not pending:
                return
            slot = (slot + 1) % pool.slots
    finally:
        pool.close()


def _open_shape(n: int) -> tuple[bool, int, list[int]]:
    """(final, ciphertext bytes, length of each sealed chunk) of a batch holding ``n`` bytes."""
    final = n <= BATCH * SEALED
    size = n if final else BATCH * SEALED
    count = -(-size // SEALED)
    return final, size, [min(SEALED, size - i * SEALED) for i in range(count)]


def _open_job(
    aead: ChaCha20Poly1305,
    get: Getter,
    load: Loader | None,
    out: memoryview,
    base: int,
    shape: tuple[bool, int, list[int]],
) -> Job:
    final, size, lengths = shape
    count = len(lengths)

    def job() -> int | None:
        if load is not None:
            load(size)
        for i in range(count):
            try:
                _open_chunk(
                    aead, get(i, lengths[i]), out[i * CHUNK :], base + i, final and i == count - 1
                )
            except InvalidTag:
                return i
        return None

    return job


def open_(
    src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None
) -> Generator[memoryview, None, None]:
    """Decrypt and authenticate the STREAM in ``src``; yields views of the plaintext.

    On a bad stream, yields the plaintext of the chunks that authenticated first, then
    raises PayloadError.
    """
    pool = _Pool(threads)
    return _open(_StreamInput(src, SEALED, pool.slots), aead, pool)


def open_file(
    fd: int, offset: int, size: int, aead: ChaCha20Poly1305, threads: int | None = None
) -> Generator[memoryview, None, None]:
    """Decrypt the ``size`` bytes of STREAM at ``offset`` in the regular file ``fd``, as ``open_``."""
    pool = _Pool(threads)
    return _open(_FileInput(fd, offset, size, SEALED, pool.slots), aead, pool)


Opening = tuple[int, tuple[bool, int, list[int]], Getter]


def _open(inp: Input, aead: ChaCha20Poly1305, pool: _Pool) -> Generator[memoryview, None, None]:
    outs = [memoryview(bytearray(BATCH * CHUNK)) for _ in range(pool.slots)]
    try:
        pending: deque[Opening] = deque()
        index, final, slot = 0, False, 0
        while True:
            while not final and len(pending) < pool.slots:
                s = (slot + len(pending)) % pool.slots
                n, get, load = inp.next_batch(s)
                shape = final, size, lengths = _open_shape(n)
                if size == 0:
                    raise PayloadError("the payload is truncated: it has no chunk")
                pool.submit(
                    s,
                    _open_job(aead, get, load, outs[s], index, shape),
                    inline=final and index == 0,
                )
                pending.append((index, shape, get))
                index += len(lengths)
            base, (last_batch, size, lengths), get = pending.popleft()
            bad = pool.wait(slot)
            if bad is not None:
                if bad:
                    yield outs[slot][: bad * CHUNK]
                last = last_batch and bad == len(lengths) - 1
                yield from _diagnose(aead, get(bad, lengths[bad]), outs[slot], base + bad, last)
            yield outs[slot][: size - len(lengths) * TAG]
            if not pending:
                return
            slot = (slot + 1) % pool.slots
    finally:
        pool.close()


def _open_chunk(
    aead: ChaCha20Poly1305, sealed: memoryview, out: memoryview, index: int, last: bool
) -> None:
    if len(sealed) < TAG or (len(sealed) == TAG and (index > 0 or not last)):
        raise InvalidTag
    aead.decrypt_into(chunk_nonce(index, last), sealed, None, out[: len(sealed) - TAG])


def _diagnose(
    aead: ChaCha20Poly1305, sealed: memoryview, out_view: memoryview, index: int, last: bool
) -> Generator[memoryview, None, None]:
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
