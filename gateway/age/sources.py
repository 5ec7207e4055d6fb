"""Byte sources the decoder reads from: a look-ahead reader and an iterator adapter.

They give ``readline`` (the header), ``readinto`` (the payload, without copies when
nothing is pending) and ``peek`` (armor detection) over any binary file object or any
iterable of byte strings. They never open anything themselves.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.age.errors import AgeError

_BLOCK = 64 * 1024


class IterReader:
    """A file-like ``readinto`` over an iterable of byte strings."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._cur = memoryview(b"")

    def readinto(self, buffer: memoryview) -> int:
        while not self._cur:
            try:
                item = next(self._it)
            except StopIteration:
                return 0
            if not isinstance(item, bytes | bytearray | memoryview):
                raise AgeError("the chunks must be bytes")
            self._cur = memoryview(item).cast("B")
        n = min(len(buffer), len(self._cur))
        buffer[:n] = self._cur[:n]
        self._cur = self._cur[n:]
        return n


def check_binary(f: Any) -> None:
    if isinstance(f, io.TextIOBase):
        raise AgeError("the source is not a binary file")


class PeekReader:
    """Wraps a binary source: ``peek``, ``readline``, ``read`` and ``readinto`` over it."""

    def __init__(self, raw: Any) -> None:
        self._raw: Any = raw
        self._pending = bytearray()
        self._eof = False
        self.consumed = 0

    def _more(self, size: int = _BLOCK) -> bool:
        if self._eof:
            return False
        if hasattr(self._raw, "readinto"):
            block = bytearray(size)
            n = self._raw.readinto(memoryview(block))
            if n is None:
                raise AgeError("the source is non-blocking and has no data ready")
            data = bytes(block[:n])
        else:
            data = self._raw.read(size)
            if not isinstance(data, bytes | bytearray):
                raise AgeError("the source is not a binary file")
        if not data:
            self._eof = True
            return False
        self._pending += data
        return True

    def peek(self, size: int) -> bytes:
        while len(self._pending) < size and self._more(size - len(self._pending)):
            pass
        return bytes(self._pending[:size])

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            end = self._pending.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if 0 <= limit <= len(self._pending):
                end = limit
                break
            start = len(self._pending)
            if not self._more(4096):
                end = len(self._pending)
                break
        if 0 <= limit < end:
            end = limit
        line = bytes(self._pending[:end])
        del self._pending[:end]
        self.consumed += len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            while self._more():
                pass
            size = len(self._pending)
        while len(self._pending) < size and self._more(max(size - len(self._pending), 4096)):
            pass
        out = bytes(self._pending[:size])
        del self._pending[:size]
        self.consumed += len(out)
        return out

    def readinto(self, buffer: memoryview) -> int:
        n = self._readinto(buffer)
        self.consumed += n
        return n

    def _readinto(self, buffer: memoryview) -> int:
        if self._pending:
            n = min(len(buffer), len(self._pending))
            buffer[:n] = self._pending[:n]
            del self._pending[:n]
            return n
        if self._eof:
            return 0
        if hasattr(self._raw, "readinto"):
            n = self._raw.readinto(buffer)
            if n is None:
                raise AgeError("the source is non-blocking and has no data ready")
            return int(n)
        data = self._raw.read(len(buffer))
        if not isinstance(data, bytes | bytearray):
            raise AgeError("the source is not a binary file")
        buffer[: len(data)] = data
        return len(data)


def regular_file(f: Any) -> tuple[int, int, int] | None:
    """(descriptor, position, size) when ``f`` is a binary regular file, else None."""
    try:
        fd = f.fileno()
        st = os.fstat(fd)
        position = f.tell()
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or not isinstance(fd, int) or position < 0:
        return None
    return fd, position, st.st_size
