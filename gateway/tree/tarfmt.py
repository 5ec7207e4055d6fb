"""The archive's tar profile: header blocks for each member, and where everything lies.

Design note. The archive is a POSIX ustar stream (POSIX.1-2001 ``pax`` interchange
format, IEEE Std 1003.1, "pax", "ustar Interchange Format") with a fixed profile:

- members are a plan's directories (typeflag ``5``, name ending in ``/``) and regular
  files (typeflag ``0``), in the plan's order, nothing else;
- mode 0644 or 0755, uid and gid 0, empty user and group names, mtime 0, devmajor and
  devminor 0; the magic ``ustar\\0``, version ``00``;
- a pax extended header (typeflag ``x``, named ``././@PaxHeader``, mode 0644, mtime 0)
  precedes a member only when it is needed: a name that is not ASCII or does not fit
  the ustar name and prefix fields (it then holds ``path``), or a size of 8 GiB or more
  (it holds ``size``; the ustar size field is then 0). The ustar name then holds an
  ASCII stand-in, for readers that do not know pax;
- each file's data is padded with zeros to a 512-byte block; the archive ends with two
  zero blocks and nothing after them (no padding to a 10240-byte record).

So every header, and the offset of every header and every file's data, follows from
the plan alone (:class:`Layout`), which is what lets a stream start at any offset.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.tree.plan import DIR, Member

BLOCK = 512
END_BLOCKS = 2 * BLOCK
USTAR_SIZE_MAX = 8**11 - 1  #: 8 GiB - 1: the most the 11 octal digits of ``size`` hold
PAX_NAME = b"././@PaxHeader"
MAGIC = b"ustar\x0000"


def padded(size: int) -> int:
    """``size`` rounded up to whole blocks."""
    return -(-size // BLOCK) * BLOCK


def _octal(value: int, width: int) -> bytes:
    """``value`` as ``width - 1`` zero-padded octal digits and a NUL."""
    return b"%0*o\x00" % (width - 1, value)


def ustar_block(name: bytes, prefix: bytes, size: int, mode: int, typeflag: bytes) -> bytes:
    """One ustar header block in the profile above, its checksum computed."""
    assert len(name) <= 100 and len(prefix) <= 155
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(0, 8)
    block[116:124] = _octal(0, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(0, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[257:265] = MAGIC
    block[329:337] = _octal(0, 8)
    block[337:345] = _octal(0, 8)
    block[345 : 345 + len(prefix)] = prefix
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """``(prefix, name)`` fields holding ``name``, or None when it does not fit ustar."""
    if len(name) <= 100:
        return b"", name
    # Split at the first '/' that leaves a name part of at most 100 bytes: the longest
    # possible name part, which is also what GNU tar and Python's tarfile choose.
    for i in range(len(name) - 1):
        if name[i : i + 1] == b"/" and 0 < len(name) - i - 1 <= 100:
            if i <= 155 and i > 0:
                return name[:i], name[i + 1 :]
            return None
    return None


def pax_record(key: str, value: str) -> bytes:
    """One ``"%d %s=%s\\n"`` record, its length counting itself."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _stand_in(name: str, is_dir: bool) -> bytes:
    """An ASCII name of at most 100 bytes for the ustar field when pax holds the real one."""
    ascii_name = name.encode("ascii", "replace")
    tail = b"/" if is_dir else b""
    return ascii_name[: 100 - len(tail)] + tail


def member_header(member: Member) -> bytes:
    """Every header block of ``member``: a pax extended header if needed, then its ustar block."""
    is_dir = member.kind == DIR
    name = member.path + ("/" if is_dir else "")
    typeflag = b"5" if is_dir else b"0"
    records = []
    fields = split_name(name.encode()) if name.isascii() else None
    if fields is None:
        records.append(pax_record("path", name))
    size = member.size
    if size > USTAR_SIZE_MAX:
        records.append(pax_record("size", str(size)))
        size = 0
    prefix, short = fields if fields is not None else (b"", _stand_in(name, is_dir))
    ustar = ustar_block(short, prefix, size, member.mode, typeflag)
    if not records:
        return ustar
    pax = b"".join(records)
    head = ustar_block(PAX_NAME, b"", len(pax), 0o644, b"x")
    return head + pax + bytes(padded(len(pax)) - len(pax)) + ustar


@dataclass(frozen=True)
class Placed:
    """Where one member lies in the archive."""

    index: int
    header_offset: int
    data_offset: int  #: just after its header blocks
    size: int
    end: int  #: after its data's padding: where the next member's header starts


class Layout:
    """The offsets of every member of a plan's archive, from the plan alone."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = tuple(members)
        self._starts: list[int] = []
        self._data: list[int] = []
        at = 0
        for m in self.members:
            self._starts.append(at)
            at += len(member_header(m))
            self._data.append(at)
            at += padded(m.size)
        self.end_of_members = at
        self.size = at + END_BLOCKS

    def placed(self, index: int) -> Placed:
        m = self.members[index]
        data = self._data[index]
        return Placed(index, self._starts[index], data, m.size, data + padded(m.size))

    def at(self, offset: int) -> int:
        """The index of the member whose header or data holds ``offset``; len for the end blocks."""
        if not 0 <= offset <= self.size:
            raise ValueError(f"offset {offset} is outside the archive (0..{self.size})")
        if offset >= self.end_of_members:
            return len(self.members)
        return bisect.bisect_right(self._starts, offset) - 1

    def boundaries(self) -> list[int]:
        """Every member's header offset, then the end blocks' offset."""
        return [*self._starts, self.end_of_members]
