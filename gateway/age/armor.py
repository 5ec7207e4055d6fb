"""ASCII armor: strict PEM, label ``AGE ENCRYPTED FILE`` (C2SP age, "ASCII armor").

Design note. RFC 7468 s. 3 strict encoding: the BEGIN line, standard padded base64 in
lines of exactly 64 columns but the last (shorter, never empty), the END line. Decoding
is as strict as the spec asks: canonical base64 only, no headers, no blank or
whitespace-bearing lines, nothing but at most 1 KiB of whitespace before and after the
block; LF or CRLF line endings. Both directions stream line by line in constant memory.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from gateway.age.errors import ArmorError

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
COLUMNS = 64
BYTES_PER_LINE = COLUMNS // 4 * 3
MAX_WHITESPACE = 1024
_LINE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_BLOCK_LINES = 1024
_TEXT_BLOCK = 64 * 1024
_BULK_MIN = 66 * 64
_FULL_LINES = re.compile(rb"(?:[A-Za-z0-9+/]{64}\r?\n)+")


def is_armored(start: bytes) -> bool:
    """Whether a file starting with ``start`` (1 KiB + 34 bytes suffice) is to be de-armored.

    A binary age file starts with ``age-encryption.org/``; anything else that carries a
    PEM boundary (``-----``) near its start is treated as armor, so a damaged armor is
    reported as an ArmorError rather than as a header that does not parse.
    """
    if start.startswith(b"age-encryption.org/"):
        return False
    return start.lstrip(b"\n\r\t ").startswith(b"-----") or b"\n-----" in start


class ArmorReader:
    """Decodes an armored age file read from ``src`` (anything with ``read``).

    Runs of full 64-column lines are validated with one regular expression and decoded
    in bulk; the first and last lines go through the strict line-by-line path.
    """

    def __init__(self, src: Any) -> None:
        self._src = src
        self._text = bytearray()
        self._eof = False
        self._started = False
        self._done = False
        self._pending = bytearray()

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._src.read(_TEXT_BLOCK)
        if not data:
            self._eof = True
            return False
        self._text += data
        return True

    def _line(self) -> bytes:
        while True:
            end = self._text.find(b"\n")
            if end >= 0:
                line = bytes(self._text[:end])
                del self._text[: end + 1]
                break
            if len(self._text) > MAX_WHITESPACE + len(BEGIN) + 2:
                raise ArmorError("an armor line is too long")
            if not self._more():
                if not self._text:
                    raise ArmorError("the armored file ends before its END line")
                line = bytes(self._text)
                self._text.clear()
                break
        return line[:-1] if line.endswith(b"\r") else line

    def _start(self) -> None:
        skipped = 0
        while True:
            line = self._line()
            if line.strip():
                break
            skipped += len(line) + 1
            if skipped > MAX_WHITESPACE:
                raise ArmorError("too much whitespace before the armor")
        if line != BEGIN:
            raise ArmorError("the armor does not start with -----BEGIN AGE ENCRYPTED FILE-----")
        self._started = True

    def _finish(self) -> None:
        rest = bytes(self._text)
        self._text.clear()
        while len(rest) < MAX_WHITESPACE and self._more():
            rest += bytes(self._text)
            self._text.clear()
        if rest.strip():
            raise ArmorError("data follows the armored file")
        if len(rest) >= MAX_WHITESPACE:
            raise ArmorError("too much whitespace after the armor")
        self._done = True

    def _decode_lines(self) -> None:
        if len(self._text) < _BULK_MIN:
            self._more()
        run = _FULL_LINES.match(self._text)
        if run is not None and run.end():
            block = self._text[: run.end()]
            del self._text[: run.end()]
            self._pending += base64.b64decode(block.translate(None, b"\r\n"))
            return
        line = self._line()
        if line == END:
            self._finish()
            return
        if len(line) > COLUMNS:
            raise ArmorError("an armor line is longer than 64 columns")
        if not line or not _LINE.fullmatch(line) or len(line) % 4:
            raise ArmorError("an armor line is not base64")
        try:
            data = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise ArmorError("an armor line is not base64") from None
        if base64.b64encode(data) != line:
            raise ArmorError("an armor line is not canonical base64")
        self._pending += data
        if len(data) < BYTES_PER_LINE:
            if self._line() != END:
                raise ArmorError("a short armor line is not followed by the END line")
            self._finish()

    def _fill(self, size: int) -> None:
        if not self._started:
            self._start()
        while len(self._pending) < size and not self._done:
            self._decode_lines()

    def readinto(self, buffer: memoryview) -> int:
        self._fill(min(len(buffer), BYTES_PER_LINE * _BLOCK_LINES))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        del self._pending[:n]
        return n

    def read(self, size: int = -1) -> bytes:
        self._fill(size if size >= 0 else 1 << 62)
        n = len(self._pending) if size < 0 else min(size, len(self._pending))
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            if not self._pending:
                self._fill(1)
                if not self._pending:
                    break
            end = self._pending.find(b"\n")
            take = len(self._pending) if end < 0 else end + 1
            if limit >= 0:
                take = min(take, limit - len(out))
            out += self._pending[:take]
            del self._pending[:take]
            if out.endswith(b"\n"):
                break
        return bytes(out)


class ArmorWriter:
    """Armors what is written to it into ``dst``; ``close()`` writes the rest and the END line."""

    def __init__(self, dst: Any) -> None:
        self._dst = dst
        self._pending = bytearray()
        self._dst.write(BEGIN + b"\n")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._pending += data
        if len(self._pending) >= BYTES_PER_LINE * _BLOCK_LINES:
            n = len(self._pending) // BYTES_PER_LINE * BYTES_PER_LINE
            self._emit(self._pending[:n])
            del self._pending[:n]
        return len(data)

    def _emit(self, data: bytes | bytearray) -> None:
        text = base64.b64encode(data)
        lines = [text[i : i + COLUMNS] for i in range(0, len(text), COLUMNS)]
        if lines:
            self._dst.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        self._emit(self._pending)
        self._pending.clear()
        self._dst.write(END + b"\n")
