"""C2SP tlog-tiles: tile and entry-bundle paths, what each tile holds, and tile contents.

Design note, by the section of c2sp.org/tlog-tiles each piece implements:

- "Merkle Tree": a tile is ``tile/<L>/<N>[.p/<W>]``; ``<L>`` is 0..63, ``<N>`` is zero-padded
  3-digit path elements, all but the last prefixed with ``x`` (1234067 is ``x001/x234/067``,
  :func:`encode_index`), ``.p/<W>`` marks a partial tile of width 1..255. Paths are parsed
  canonically, as golang.org/x/mod ``sumdb/tlog.ParseTilePath`` does: a path must be the one
  :meth:`Tile.path` writes (no ``x000/`` groups, no leading zeroes), so each resource has
  exactly one name (:func:`parse_path`).
- Hash *i* of tile *n* at level *L* is ``MTH(D[(n*256+i)*256**L : (n*256+i+1)*256**L])``:
  the complete subtree of height 8L at index n*256+i, that is :class:`~merkle.NodeID`
  ``(8L, n*256+i)`` (:meth:`Tile.node_ids`). The audit store keeps the hash of every complete
  subtree, so :func:`build_hash_tile` only reads stored hashes.
- "Partial Tiles": in a tree of size s the rightmost tile of level L has width
  ``floor(s / 256**L) mod 256`` and empty tiles do not exist (:func:`tile_width`).
  :func:`new_tiles` names the tiles a log publishes when it grows (golang.org/x/mod
  ``tlog.NewTiles`` with height 8).
- "Log entries": ``tile/entries/<N>[.p/<W>]`` (:class:`Bundle`) is a sequence of entries each
  prefixed with its big-endian uint16 length, so an entry holds at most
  :data:`MAX_ENTRY_SIZE` bytes (:func:`encode_entry_bundle`, :func:`decode_entry_bundle`).

Reading a tree back from tiles, with every hash authenticated against a checkpoint's root,
is :mod:`gateway.audit.tilereader`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from gateway.audit.merkle import HASH_SIZE, NodeID

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
MAX_INDEX = (1 << 64) - 1
MAX_ENTRY_SIZE = 0xFFFF
"""The largest entry an entry bundle can hold: its length is a big-endian uint16."""

HashSource = Callable[[Sequence[NodeID]], Sequence[bytes]]
"""Returns the stored hashes of complete subtrees, in the order asked."""

_GROUP = re.compile(r"x?[0-9]{3}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,2}")  # a level (<= 63) or a partial width (< 256)


class TileError(ValueError):
    """A tile path, tile or entry bundle is malformed or does not fit the tree."""


class EntryTooLarge(TileError):
    """An entry is longer than an entry bundle's uint16 length prefix can say."""


def encode_index(n: int) -> str:
    """tlog-tiles: ``<N>`` as 3-digit groups, all but the last prefixed with ``x``."""
    if not 0 <= n <= MAX_INDEX:
        raise TileError(f"tile index {n} is out of range")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


_MAX_GROUPS = len(encode_index(MAX_INDEX).split("/"))


def parse_index(text: str) -> int:
    """The tile index of a canonical ``<N>`` path part (``x001/x234/067``)."""
    groups = text.split("/")
    if (
        len(groups) > _MAX_GROUPS
        or not all(_GROUP.fullmatch(g) for g in groups)
        or any(g.startswith("x") != (i < len(groups) - 1) for i, g in enumerate(groups))
    ):
        raise TileError(f"malformed tile index {text!r}")
    n = 0
    for g in groups:
        n = n * 1000 + int(g.lstrip("x"))
    if n > MAX_INDEX or encode_index(n) != text:
        raise TileError(f"tile index {text!r} is not in canonical form")
    return n


def _check(index: int, width: int) -> None:
    if not 0 <= index <= MAX_INDEX:
        raise TileError(f"tile index {index} is out of range")
    if not 1 <= width <= TILE_WIDTH:
        raise TileError(f"tile width {width} is not between 1 and {TILE_WIDTH}")


def _suffix(index: int, width: int) -> str:
    return encode_index(index) + ("" if width == TILE_WIDTH else f".p/{width}")


@dataclass(frozen=True, order=True)
class Tile:
    """A hash tile: ``width`` consecutive hashes at tree level ``8 * level``."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise TileError(f"tile level {self.level} is not between 0 and {MAX_LEVEL}")
        _check(self.index, self.width)

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        return f"tile/{self.level}/{_suffix(self.index, self.width)}"

    def node_ids(self) -> list[NodeID]:
        """The complete subtrees whose hashes the tile holds, in order: (8L, n*256 + i)."""
        first = self.index * TILE_WIDTH
        return [NodeID(TILE_HEIGHT * self.level, first + i) for i in range(self.width)]

    def leaf_range(self) -> tuple[int, int]:
        """The entries ``[start, end)`` the tile's hashes span."""
        span = 1 << (TILE_HEIGHT * self.level)
        start = self.index * TILE_WIDTH * span
        return start, start + self.width * span


@dataclass(frozen=True, order=True)
class Bundle:
    """An entry bundle: ``width`` consecutive entries from ``index * 256``."""

    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        _check(self.index, self.width)

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        return f"tile/entries/{_suffix(self.index, self.width)}"

    def leaf_range(self) -> tuple[int, int]:
        start = self.index * TILE_WIDTH
        return start, start + self.width


def parse_path(path: str) -> Tile | Bundle:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (relative to the prefix)."""
    head, sep, rest = path.partition("/")
    level, sep2, rest = rest.partition("/")
    if head != "tile" or not sep or not sep2:
        raise TileError(f"malformed tile path {path!r}")
    width = TILE_WIDTH
    index_part, dot_p, width_text = rest.partition(".p/")
    if dot_p:
        if not _DECIMAL.fullmatch(width_text) or not 1 <= int(width_text) < TILE_WIDTH:
            raise TileError(f"malformed partial tile width in {path!r}")
        width = int(width_text)
    index = parse_index(index_part)
    if level == "entries":
        return Bundle(index, width)
    if not _DECIMAL.fullmatch(level) or int(level) > MAX_LEVEL:
        raise TileError(f"malformed tile level in {path!r}")
    return Tile(int(level), index, width)


def tile_width(level: int, index: int, size: int) -> int:
    """The width of tile ``index`` at ``level`` in a tree of ``size`` entries; 0 if it does not exist."""
    count = size >> (TILE_HEIGHT * level)  # hashes at tree level 8L
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def tile_at(level: int, index: int, size: int) -> Tile:
    """The tile ``(level, index)`` as it is in a tree of ``size`` entries."""
    width = tile_width(level, index, size)
    if width == 0:
        raise TileError(f"tile {level}/{index} does not exist in a tree of size {size}")
    return Tile(level, index, width)


def bundle_at(index: int, size: int) -> Bundle:
    """The entry bundle ``index`` as it is in a tree of ``size`` entries."""
    width = tile_width(0, index, size)
    if width == 0:
        raise TileError(f"entry bundle {index} does not exist in a tree of size {size}")
    return Bundle(index, width)


def new_tiles(old_size: int, new_size: int) -> Iterator[Tile]:
    """The hash tiles that appear when a tree grows from ``old_size`` to ``new_size``.

    Level by level: every full tile completed since ``old_size``, then the new partial tile.
    ``new_tiles(0, size)`` is every tile of the tree.
    """
    if not 0 <= old_size <= new_size:
        raise TileError(f"invalid growth {old_size} -> {new_size}")
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        old_n, new_n = old_size >> (TILE_HEIGHT * level), new_size >> (TILE_HEIGHT * level)
        if old_n != new_n:
            for n in range(old_n >> TILE_HEIGHT, new_n >> TILE_HEIGHT):
                yield Tile(level, n)
            if new_n % TILE_WIDTH:
                yield Tile(level, new_n >> TILE_HEIGHT, new_n % TILE_WIDTH)
        level += 1


def new_bundles(old_size: int, new_size: int) -> Iterator[Bundle]:
    """The entry bundles that appear when a tree grows from ``old_size`` to ``new_size``."""
    for tile in new_tiles(old_size, new_size):
        if tile.level == 0:
            yield Bundle(tile.index, tile.width)


def build_hash_tile(tile: Tile, hashes: HashSource) -> bytes:
    """The bytes of ``tile``: the stored hashes of its :meth:`~Tile.node_ids`, concatenated."""
    ids = tile.node_ids()
    got = list(hashes(ids))
    if len(got) != len(ids) or any(len(h) != HASH_SIZE for h in got):
        raise TileError(
            f"hash source returned {len(got)} hashes for the {len(ids)} of {tile.path()}"
        )
    return b"".join(got)


def split_hash_tile(tile: Tile, data: bytes) -> list[bytes]:
    """The hashes in the bytes of ``tile``, refusing bytes of the wrong length."""
    if len(data) != tile.width * HASH_SIZE:
        raise TileError(f"{tile.path()} is {len(data)} bytes, want {tile.width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Iterable[bytes]) -> bytes:
    """tlog-tiles "Log entries": each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    count = 0
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise EntryTooLarge(f"entry {count} is {len(entry)} bytes, at most {MAX_ENTRY_SIZE}")
        out += len(entry).to_bytes(2, "big") + entry
        count += 1
    if not 1 <= count <= TILE_WIDTH:
        raise TileError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, got {count}")
    return bytes(out)


def decode_entry_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle; with ``width``, refuse a bundle of another number of entries."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError("entry bundle ends inside a length prefix")
        end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
        if end > len(data):
            raise TileError(f"entry {len(entries)} runs past the end of the bundle")
        entries.append(data[pos + 2 : end])
        pos = end
    if not 1 <= len(entries) <= TILE_WIDTH or (width is not None and len(entries) != width):
        want = f"{width}" if width is not None else f"1 to {TILE_WIDTH}"
        raise TileError(f"entry bundle holds {len(entries)} entries, want {want}")
    return entries
