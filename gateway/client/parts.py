"""Encrypt a file as it is read and send it as upload parts, in parallel, in bounded memory.

One reader thread reads the plaintext in order, hashes it (the manifest's plaintext commitment),
seals it chunk by chunk (:class:`gateway.client.sealing.Payload`) and fills part-sized
buffers; a small pool of sender threads hashes each full part and PUTs it, retrying
with backoff. There are exactly ``jobs`` part buffers: the reader waits for a free
one, so memory is ``jobs x part_size`` whatever the file size, and at most ``jobs``
parts are in flight. Plaintext exists only in the reader's 1 MiB read buffer.

A part the gateway already holds with the same size and SHA-256 (a resumed push) is
not sent again.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from gateway.age.stream import CHUNK
from gateway.client.errors import FileChanged
from gateway.client.http import Api, ApiError, with_retries
from gateway.client.sealing import Payload, chunk_count
from gateway.manifest import Hasher

READ_BLOCK = 16 * CHUNK
SEND_SLICE = 1 << 20


class Source(Protocol):
    """A plaintext read into caller's buffers, as an unbuffered file is."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def read(self, size: int = -1, /) -> bytes | None: ...


@dataclass
class Sealed:
    """What the reader learnt on the way: the plaintext commitment and size."""

    plaintext: Hasher = field(default_factory=hashlib.sha256)
    size: int = 0


def ciphertext(
    fh: Source, payload: Payload, prefix: bytes, size: int, out: Sealed
) -> Iterator[bytes | memoryview]:
    """The age file, piece by piece: ``prefix`` (header and nonce), then each sealed chunk.

    Two read buffers alternate, so the plaintext digest of one block (on a helper
    thread; hashlib releases the GIL) overlaps the sealing of the next.
    """
    yield prefix
    blocks = [bytearray(READ_BLOCK), bytearray(READ_BLOCK)]
    pending: list[Future[None] | None] = [None, None]
    chunks, index, turn = chunk_count(size), 0, 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
        while index < chunks:
            waiting = pending[turn]
            if waiting is not None:
                waiting.result()
            view = memoryview(blocks[turn])
            want = min(READ_BLOCK, size - index * CHUNK)
            got = _read_full(fh, view[:want])
            if got != want:
                raise FileChanged("the file got shorter while it was being read")
            pending[turn] = hasher.submit(out.plaintext.update, view[:got])
            out.size += got
            for start in range(0, max(got, 1), CHUNK):
                yield payload.seal(
                    index, view[start : min(start + CHUNK, got)], index == chunks - 1
                )
                index += 1
            turn ^= 1
    if fh.read(1):
        raise FileChanged("the file grew while it was being read")


def _read_full(fh: Source, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    return got


class _Body:
    """A part's bytes as an iterable with a length: sent in slices, progress per slice."""

    def __init__(self, view: memoryview, advance: Callable[[int], None]) -> None:
        self.view = view
        self.advance = advance
        self.sent = 0

    def __len__(self) -> int:
        return len(self.view)

    def __iter__(self) -> Iterator[memoryview]:
        for start in range(0, len(self.view), SEND_SLICE):
            piece = self.view[start : start + SEND_SLICE]
            yield piece
            self.sent += len(piece)
            self.advance(len(piece))


def _retry_part(exc: ApiError) -> bool:
    return exc.retryable or str(exc.problem_body.get("type", "")).endswith("digest-mismatch")


@dataclass
class PartSender:
    """PUTs parts of one upload; skips the parts the gateway already holds."""

    api: Api
    upload: str
    existing: dict[int, tuple[int, str]]
    advance: Callable[[int], None]
    attempts: int = 6
    backoff: float = 0.5
    on_retry: Callable[[ApiError, float], None] | None = None
    stored: set[int] = field(default_factory=set)
    """The parts the gateway is known to hold: already there, or stored since."""

    def send(self, number: int, view: memoryview) -> bytes:
        digest = hashlib.sha256(view).digest()
        if self.existing.get(number) == (len(view), digest.hex()):
            self.advance(len(view))
            self.stored.add(number)
            return digest
        body = _Body(view, self.advance)

        def put() -> None:
            if body.sent:
                self.advance(-body.sent)
                body.sent = 0
            self.api.request(
                "PUT",
                f"/v1/uploads/{self.upload}/parts/{number}",
                data=body,
                headers={
                    "X-Content-SHA256": digest.hex(),
                    "Content-Type": "application/octet-stream",
                },
            )

        with_retries(
            put,
            attempts=self.attempts,
            base=self.backoff,
            retry_if=_retry_part,
            on_retry=self.on_retry,
        )
        self.stored.add(number)
        return digest


def send_parts(
    pieces: Iterator[bytes | memoryview],
    part_size: int,
    sender: PartSender,
    jobs: int,
    first: int = 1,
) -> list[bytes]:
    """Cut ``pieces`` into parts and send them with ``jobs`` threads; the parts' digests in order.

    ``pieces`` start at part ``first`` (a resumed push that starts where the gateway's
    parts stop); the digests are those of the parts sent, from ``first`` on.

    The first part that fails for good stops the reader, and its error is raised.
    """
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(max(1, jobs)):
        free.put(bytearray(part_size))
    futures: dict[int, Future[bytes]] = {}
    failed = threading.Event()

    def job(number: int, buf: bytearray, length: int) -> bytes:
        try:
            return sender.send(number, memoryview(buf)[:length])
        except BaseException:
            failed.set()
            raise
        finally:
            free.put(buf)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="part") as pool:
            try:
                for number, buf, length in _fill(pieces, part_size, free, failed, first):
                    futures[number] = pool.submit(job, number, buf, length)
            except _Stop:
                pass
            except BaseException:
                failed.set()
                for f in futures.values():
                    f.cancel()
                raise
    finally:
        # A reader stopped early is closed here, in this thread: left to the garbage
        # collector, its clean-up (joining its hashing thread) could run inside another
        # thread's start-up while that holds threading's internal lock, and deadlock.
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    return [futures[n].result() for n in sorted(futures)]


def _fill(
    pieces: Iterator[bytes | memoryview],
    part_size: int,
    free: queue.Queue[bytearray],
    failed: threading.Event,
    first: int = 1,
) -> Iterator[tuple[int, bytearray, int]]:
    number, buf, used = first, _take(free, failed), 0
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            n = min(len(view), part_size - used)
            buf[used : used + n] = view[:n]
            used += n
            view = view[n:]
            if used == part_size:
                yield number, buf, used
                number, buf, used = number + 1, _take(free, failed), 0
    if used or number == first:
        yield number, buf, used
    else:
        free.put(buf)


def _take(free: queue.Queue[bytearray], failed: threading.Event) -> bytearray:
    """A free part buffer, unless a part failed for good (checked again once one is free:
    the failing part frees its buffer after it fails, and no further part may start)."""
    while True:
        if failed.is_set():
            raise _Stop()
        try:
            buf = free.get(timeout=0.2)
        except queue.Empty:
            continue
        if failed.is_set():
            free.put(buf)
            raise _Stop()
        return buf


class _Stop(Exception):
    """A part failed: stop reading; the failing part's error is raised instead."""
