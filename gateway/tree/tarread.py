"""Reading an archive's headers strictly: only the profile's member types, nothing hidden.

Design note. :class:`TarReader` reads a tar stream from a ``readinto`` source in order
and hands out one :class:`Header` at a time; the caller reads the member's data with
:meth:`TarReader.read_data`. It accepts POSIX ustar headers (magic ``ustar\\0``, version
``00``, a correct checksum, plain octal numbers) of regular files (``0``) and
directories (``5``), each optionally preceded by one pax extended header (``x``) whose
records are ``path`` and ``size`` (used) and ``mtime``, ``atime``, ``ctime``, ``uid``,
``gid``, ``uname``, ``gname``, ``comment`` (ignored: the extractor sets none of them).
Refused, naming the member where known: hard and symbolic links, devices, FIFOs,
global pax headers, GNU long-name and sparse members, any other pax record (e.g.
``linkpath``, ``hdrcharset``, ``GNU.sparse.*``), base-256 numbers, a directory with a
size, a name that :func:`gateway.tree.names.check_name` refuses, non-zero padding, a
lone zero block followed by data, a stream that ends before its end blocks, and any
data after them but up to one 10240-byte record of zeros (GNU tar's blocking).
Each header's raw blocks are kept (:attr:`Header.raw`) for the archive transcript.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.age.stream import ReadInto
from gateway.tree.errors import BadName, ExtractError
from gateway.tree.names import check_name, quoted
from gateway.tree.plan import DIR, FILE
from gateway.tree.tarfmt import BLOCK, padded

MAX_PAX = 64 * 1024
PAX_SIZE = re.compile(r"[0-9]{1,19}")
"""A pax ``size``: ASCII digits only (``str.isdigit`` takes "²"), at most 19 of them."""
RECORD = 10240
PAX_IGNORED = frozenset({"mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment"})
REFUSED_TYPES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"g": "a global pax header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
    b"S": "a GNU sparse file",
    b"x": "a pax header followed by another",
}


@dataclass(frozen=True)
class Header:
    path: str  #: valid, without a trailing slash
    kind: str  #: FILE or DIR
    size: int
    mode: int  #: 0o755 or 0o644, from the owner's execute bit
    raw: bytes  #: every header block as read, pax header included
    offset: int  #: where the first of them starts


class PiecesReader:
    """A reader over an iterator of byte pieces (such as decrypted STREAM).

    Besides ``readinto``, :meth:`readview` hands out the pieces' own bytes without a copy.
    """

    def __init__(self, pieces: Iterator[bytes | memoryview]) -> None:
        self._pieces = pieces
        self._left = memoryview(b"")

    def readview(self, size: int, /) -> memoryview:
        """Up to ``size`` bytes, empty at the end; valid only until the next read."""
        while not len(self._left):
            nxt = next(self._pieces, None)
            if nxt is None:
                return self._left
            self._left = memoryview(nxt).cast("B")
        view, self._left = self._left[:size], self._left[size:]
        return view

    def readinto(self, buffer: memoryview, /) -> int:
        view = self.readview(len(buffer))
        buffer[: len(view)] = view
        return len(view)


def _octal(field: bytes, what: str, where: str) -> int:
    text = field.rstrip(b"\x00 ").lstrip(b" ")
    if field[:1] and field[0] & 0x80:
        raise ExtractError(f"{where}: a base-256 {what}, outside the profile")
    if not text:
        return 0
    if not all(0x30 <= c <= 0x37 for c in text):
        raise ExtractError(f"{where}: the {what} field is not an octal number")
    return int(text, 8)


def _cstring(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def parse_pax(data: bytes, where: str) -> dict[str, str]:
    """The records of a pax extended header; ExtractError on any malformed or unknown one."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise ExtractError(f"{where}: a malformed pax record")
        end = pos + int(digits)
        if end > len(data) or end <= space or data[end - 1 : end] != b"\n":
            raise ExtractError(f"{where}: a malformed pax record")
        key_b, eq, value_b = data[space + 1 : end - 1].partition(b"=")
        try:
            key, value = key_b.decode("ascii"), value_b.decode("utf-8")
        except UnicodeDecodeError:
            raise ExtractError(f"{where}: a pax record that is not UTF-8") from None
        if not eq or key in records:
            raise ExtractError(f"{where}: a malformed or repeated pax record {quoted(key)}")
        if key not in ("path", "size") and key not in PAX_IGNORED:
            raise ExtractError(f"{where}: the pax record {quoted(key)} is outside the profile")
        records[key] = value
        pos = end
    if "size" in records and not PAX_SIZE.fullmatch(records["size"]):
        named = quoted(records["path"]) if "path" in records else where
        raise ExtractError(
            f"{named}: a pax size that is not a number of at most 19 ASCII digits",
            path=records.get("path"),
        )
    return records


class TarReader:
    """Headers and data of a tar stream, in order (see the module note)."""

    def __init__(self, src: ReadInto, offset: int = 0) -> None:
        self._src = src
        self.offset = offset  #: of the next byte to be read, in the archive
        self._left = 0  #: data bytes of the current member not yet read
        self._pad = 0

    def _exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self._src.readinto(view[got:])
            if not k:
                raise ExtractError(f"the archive ends early, at offset {self.offset + got}")
            got += k
        self.offset += n
        return bytes(buf)

    def skip_to(self, offset: int) -> None:
        """Discard the stream up to ``offset`` (a resumed extraction restarting there)."""
        while self.offset < offset:
            self._exact(min(1 << 20, offset - self.offset))

    def next(self) -> Header | None:
        """The next member's header; None after the end blocks (and the check of what follows)."""
        if self._left or self._pad:
            raise ExtractError("a member's data was not read to its end")
        start = self.offset
        block = self._exact(BLOCK)
        if block == bytes(BLOCK):
            self._end(start)
            return None
        records: dict[str, str] = {}
        raw = block
        if block[156:157] == b"x":
            size = self._check(block, start)
            if size > MAX_PAX:
                raise ExtractError(f"offset {start}: a pax header over {MAX_PAX} bytes")
            data = self._exact(padded(size))
            records = parse_pax(data[:size], f"offset {start}")
            block = self._exact(BLOCK)
            raw = raw + data + block
        return self._member(block, records, raw, start)

    def _check(self, block: bytes, start: int) -> int:
        where = f"offset {start}"
        if block[257:263] != b"ustar\x00" or block[263:265] != b"00":
            raise ExtractError(f"{where}: not a POSIX ustar header")
        stored = _octal(block[148:156], "checksum", where)
        if stored != sum(block[:148]) + 8 * 0x20 + sum(block[156:]):
            raise ExtractError(f"{where}: the header checksum does not match")
        return _octal(block[124:136], "size", where)

    def _member(self, block: bytes, records: dict[str, str], raw: bytes, start: int) -> Header:
        size = self._check(block, start)
        typeflag = block[156:157]
        prefix, short = _cstring(block[345:500]), _cstring(block[0:100])
        try:
            name = records.get("path") or (prefix + b"/" + short if prefix else short).decode()
        except UnicodeDecodeError:
            raise ExtractError(f"offset {start}: a member name that is not UTF-8") from None
        shown = quoted(name)
        if typeflag in REFUSED_TYPES:
            raise ExtractError(f"{shown}: {REFUSED_TYPES[typeflag]}", path=name)
        if typeflag not in (b"0", b"\x00", b"5"):
            raise ExtractError(f"{shown}: a member of unknown type {typeflag!r}", path=name)
        if _cstring(block[157:257]):
            raise ExtractError(f"{shown}: a link name on a file or directory", path=name)
        if "size" in records:
            size = int(records["size"])
        kind = DIR if typeflag == b"5" else FILE
        if kind == DIR:
            name = name[:-1] if name.endswith("/") else name
            if size:
                raise ExtractError(f"{shown}: a directory with content", path=name)
        try:
            check_name(name)
        except BadName as exc:
            raise ExtractError(exc.detail, path=name) from None
        mode = _octal(block[100:108], "mode", shown)
        self._left, self._pad = size, padded(size) - size
        exec_bit = kind == DIR or bool(mode & 0o100)
        return Header(name, kind, size, 0o755 if exec_bit else 0o644, raw, start)

    def read_data(self, buffer: memoryview) -> memoryview:
        """Up to ``len(buffer)`` bytes of the current member's data, empty at its end.

        The bytes are in ``buffer``, or, from a source with ``readview`` (a
        :class:`PiecesReader`), in the source's own piece; valid until the next read.
        """
        want = min(len(buffer), self._left)
        if not want:
            return buffer[:0]
        readview = getattr(self._src, "readview", None)
        if readview is not None:
            view: memoryview = readview(want)
            got = len(view)
        else:
            view, got = buffer[:want], 0
            while got < want:
                k = self._src.readinto(view[got:])
                if not k:
                    break
                got += k
        if not got:
            raise ExtractError(f"the archive ends early, at offset {self.offset}")
        self.offset += got
        self._left -= got
        if not self._left and self._pad:
            self._skip_padding()
        return view[:got]

    def _skip_padding(self) -> None:
        pad, self._pad = self._pad, 0
        if self._exact(pad) != bytes(pad):
            raise ExtractError(f"offset {self.offset - pad}: padding that is not zeros")

    def _end(self, start: int) -> None:
        if self._exact(BLOCK) != bytes(BLOCK):
            raise ExtractError(f"offset {start}: a lone zero block followed by data")
        buf = bytearray(RECORD + 1)
        view, got = memoryview(buf), 0
        while got < len(buf):
            k = self._src.readinto(view[got:])
            if not k:
                break
            got += k
        if got > RECORD or any(buf[:got]):
            raise ExtractError(f"offset {self.offset}: data after the end of the archive")
        self.offset += got
