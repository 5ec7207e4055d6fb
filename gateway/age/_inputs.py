"""Where STREAM batches come from: a ``readinto`` stream, or a regular file read by position.

Design note. Both inputs cut their source into batches of a fixed number of bytes and
report, for each, how many bytes are *available*: the batch, plus one when the source
goes on after it. That byte of look-ahead is what tells whether a batch holds the final
chunk, which STREAM must know before sealing or opening it.

- :class:`StreamInput` reads each batch on the calling thread with ``readinto`` into the
  slot's own input buffer; the look-ahead byte, read with the batch, is carried to the
  front of the next slot's buffer.
- :class:`FileInput` reads nothing itself: it hands out positions, and the worker that
  processes a batch reads it with one ``os.preadv`` (:func:`pread_full`), straight into
  whatever buffers the job names. One call per batch rather than per chunk matters: each
  call releases and takes back the GIL, which the workers would otherwise pass to each
  other tens of thousands of times per GiB. The look-ahead is the file's size.

A batch's chunks are addressed through :class:`ChunkViews`; for a full batch they depend
only on the slot's buffers, so :class:`Layouts` makes them once per slot.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple, Protocol

from gateway.age.errors import AgeError


class ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


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


def pread_full(fd: int, views: list[memoryview], offset: int, size: int) -> None:
    """Fill ``views`` (``size`` bytes in all) from ``fd`` at ``offset``, short reads resumed.

    AgeError when the file ends first: it shrank while it was being read.
    """
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


class StreamBatch(NamedTuple):
    available: int  #: bytes of the batch read, plus one if the stream goes on
    data: memoryview  #: the slot's input buffer, the batch at its start


class StreamInput:
    """Batches of ``batch`` bytes read from a ``readinto`` source, one input buffer per slot."""

    def __init__(self, src: ReadInto, batch: int, slots: int) -> None:
        self._src, self._size = src, batch
        self._bufs = [bytearray(batch + 1) for _ in range(slots)]
        self._views = [memoryview(b) for b in self._bufs]
        self._prev, self._carry = 0, 0

    def next_batch(self, slot: int) -> StreamBatch:
        """Read the next batch into ``slot``'s buffer (slots are taken in ring order)."""
        if self._carry:
            self._bufs[slot][0] = self._bufs[self._prev][self._size]
        self._prev = slot
        n = self._carry + fill(self._src, self._views[slot][self._carry :])
        self._carry = 1 if n > self._size else 0
        return StreamBatch(n, self._views[slot])


class FileBatch(NamedTuple):
    position: int  #: where the batch starts in the file
    available: int  #: bytes from there to the end, at most a batch and one more


class FileInput:
    """Batches of ``batch`` bytes of a regular file, read by position by whoever needs them."""

    def __init__(self, fd: int, offset: int, size: int, batch: int) -> None:
        self._fd, self._offset, self._end, self._batch = fd, offset, offset + size, batch

    def next_batch(self) -> FileBatch:
        base = self._offset
        self._offset = min(self._end, base + self._batch)
        return FileBatch(base, min(self._end - base, self._batch + 1))

    def read(self, views: list[memoryview], position: int, size: int) -> None:
        """Fill ``views`` with the ``size`` bytes at ``position`` (:func:`pread_full`)."""
        if size:
            pread_full(self._fd, views, position, size)


class ChunkViews(NamedTuple):
    """Where each chunk of a batch is read from and written to, one view per chunk."""

    inputs: list[memoryview]
    outputs: list[memoryview]


def slices(buf: memoryview, stride: int, size: int, count: int, piece: int) -> list[memoryview]:
    """Views of ``count`` pieces of at most ``piece`` bytes (``size`` in all), ``stride`` apart."""
    return [buf[i * stride : i * stride + min(piece, size - i * piece)] for i in range(count)]


class Layouts:
    """Each slot's chunk views for a full batch, made once: they depend only on its buffers."""

    def __init__(self) -> None:
        self._full: dict[int, ChunkViews] = {}

    def views(self, slot: int, full: bool, make: Callable[[], ChunkViews]) -> ChunkViews:
        """``make()``, or for a full batch the views made the first time for ``slot``."""
        if not full:
            return make()
        if slot not in self._full:
            self._full[slot] = make()
        return self._full[slot]
