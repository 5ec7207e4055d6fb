"""A tiled tree read back from its tiles alone, every hash authenticated against a root.

Design note (c2sp.org/tlog-tiles "Merkle Tree" and "Partial Tiles"; RFC 9162 §2.1 for the
tree; the method of golang.org/x/mod ``sumdb/tlog.TileHashReader``):

- In a tree of size n, the rightmost tile of each level L whose width
  ``floor(n / 256**L) mod 256`` is not zero is partial, and its hashes are exactly the complete
  subtrees of levels 8L..8L+7 that make up the root (:func:`merkle.root_nodes`). So
  :class:`TileReader` first fetches those partial tiles, folds the root from them, and compares
  it with the checkpoint's root: if it matches, the partial tiles are authentic.
- A full tile (level L, index t) hashes, as a perfect subtree of 256 hashes, to hash
  ``t mod 256`` of tile ``(L+1, t // 256)``. Any other tile is authenticated by checking that
  chain up to an authentic tile; each tile is checked once and kept.
- A node (level l, index i) of the tree is read from the tile of level ``l // 8`` holding its
  ``2**(l mod 8)`` descendants at level 8L, folded pairwise. Proofs are the node lists of
  :mod:`gateway.audit.merkle` filled from there, so they are the proofs the log would serve.
- An entry bundle is authentic when each entry's leaf hash is the matching hash of the
  authentic level-0 tile.

The fetcher is any callable from a :class:`~gateway.audit.tiles.Tile` to its bytes (HTTP,
files, a dict): nothing it returns is trusted.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from gateway.audit import merkle
from gateway.audit.merkle import NodeID, ProofError
from gateway.audit.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    TileError,
    bundle_at,
    decode_entry_bundle,
    split_hash_tile,
    tile_at,
    tile_width,
)

TileFetcher = Callable[[Tile], bytes]
"""Returns the bytes of a hash tile; what it returns is checked before it is used."""


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree whose 2**k leaves-of-the-tile are ``hashes``."""
    if not hashes or len(hashes) & (len(hashes) - 1):
        raise ValueError(
            f"a perfect subtree has a power-of-two number of hashes, not {len(hashes)}"
        )
    row = list(hashes)
    while len(row) > 1:
        row = [merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


class TileReader:
    """The tree of ``size`` entries with root ``root``, read from tiles through ``fetch``.

    The constructor fetches the partial tiles and raises :class:`ProofError` unless they fold
    into ``root``; every later read authenticates the tiles it uses.
    """

    def __init__(self, size: int, root: bytes, fetch: TileFetcher) -> None:
        if size < 0:
            raise ValueError("tree size must be >= 0")
        self.size = size
        self.root = root
        self._fetch = fetch
        self._authentic: dict[tuple[int, int], list[bytes]] = {}
        self._check_root()

    def _load(self, level: int, index: int) -> list[bytes]:
        tile = tile_at(level, index, self.size)
        try:
            return split_hash_tile(tile, self._fetch(tile))
        except TileError as exc:
            raise ProofError(f"bad tile: {exc}") from None

    def _check_root(self) -> None:
        edges: dict[tuple[int, int], list[bytes]] = {}
        level = 0
        while self.size >> (TILE_HEIGHT * level):
            index = self.size >> (TILE_HEIGHT * (level + 1))
            if 0 < tile_width(level, index, self.size) < TILE_WIDTH:
                edges[(level, index)] = self._load(level, index)
            level += 1
        hashes = [self._node(n, edges) for n in merkle.root_nodes(self.size)]
        got = merkle.root_from_nodes(hashes)
        if not hmac.compare_digest(got, self.root):
            raise ProofError(
                f"tiles of the tree of size {self.size} fold to {got.hex()}, "
                f"not the checkpoint's root {self.root.hex()}"
            )
        self._authentic.update(edges)

    def _node(self, node: NodeID, tiles: dict[tuple[int, int], list[bytes]]) -> bytes:
        level, k = divmod(node.level, TILE_HEIGHT)
        first = node.index << k
        row = tiles[(level, first >> TILE_HEIGHT)]
        start = first & (TILE_WIDTH - 1)
        return fold(row[start : start + (1 << k)])

    def _tile(self, level: int, index: int) -> list[bytes]:
        """The authentic hashes of tile ``(level, index)``, checked up the chain of full tiles."""
        known = self._authentic.get((level, index))
        if known is not None:
            return known
        hashes = self._load(level, index)
        if len(hashes) < TILE_WIDTH:  # a partial tile is on the right edge: checked by the root
            raise ProofError(f"tile {level}/{index} should have been checked against the root")
        parent = self._tile(level + 1, index >> TILE_HEIGHT)
        if not hmac.compare_digest(fold(hashes), parent[index & (TILE_WIDTH - 1)]):
            raise ProofError(f"tile {level}/{index} does not hash into tile {level + 1}")
        self._authentic[(level, index)] = hashes
        return hashes

    def hashes(self, ids: Sequence[NodeID]) -> list[bytes]:
        """The authentic hashes of complete subtrees ``ids`` (a :data:`tiles.HashSource`)."""
        out = []
        for node in ids:
            if node.level < 0 or node.index < 0 or node.coverage()[1] > self.size:
                raise ValueError(
                    f"{node} is not a complete subtree of the tree of size {self.size}"
                )
            level, k = divmod(node.level, TILE_HEIGHT)
            self._tile(level, (node.index << k) >> TILE_HEIGHT)
            out.append(self._node(node, self._authentic))
        return out

    def leaf_hash(self, index: int) -> bytes:
        return self.hashes([NodeID(0, index)])[0]

    def root_at(self, size: int) -> bytes:
        """The root of the tree of the first ``size`` entries (0 <= size <= self.size)."""
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside the tree (0..{self.size})")
        return merkle.root_from_nodes(self.hashes(merkle.root_nodes(size)))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1: the inclusion proof of entry ``index`` in the tree of ``size``."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"index {index} is not below size {size} <= {self.size}")
        nodes = merkle.inclusion_nodes(index, size)
        return nodes.rehash(self.hashes(nodes.ids))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1: the consistency proof from ``old_size`` to ``new_size``."""
        new_size = self.size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError(f"invalid consistency range {old_size} -> {new_size}")
        nodes = merkle.consistency_nodes(old_size, new_size)
        return nodes.rehash(self.hashes(nodes.ids))

    def entries(self, bundle_index: int, data: bytes) -> list[bytes]:
        """The entries of bundle ``bundle_index`` if ``data`` is that bundle of this tree."""
        bundle = bundle_at(bundle_index, self.size)
        try:
            entries = decode_entry_bundle(data, bundle.width)
        except TileError as exc:
            raise ProofError(f"bad entry bundle: {exc}") from None
        tile = self._tile(0, bundle_index)
        for i, entry in enumerate(entries):
            if not hmac.compare_digest(merkle.leaf_hash(entry), tile[i]):
                raise ProofError(
                    f"entry {bundle.index * TILE_WIDTH + i} does not match its leaf hash"
                )
        return entries
