"""The log as C2SP tlog-tiles: hash tiles and entry bundles read from the audit store.

Design note (c2sp.org/tlog-tiles "Merkle Tree", "Partial Tiles", "Log entries"): hash *i*
of tile *n* at level *L* is the stored complete subtree (8L, n·256+i), so a tile is one
query for its hashes (:func:`gateway.audit.store.tile_hashes`) and an entry bundle one read
of its leaves. A tile exists at a width when the log's head holds that many of its hashes:
a full tile once all 256 are complete, a partial tile ``.p/<W>`` for every width the tile
has had, since its hashes never change as the tree grows (the spec requires the widths of
checkpointed sizes and lets a log keep the rest). Anything else is :class:`TileNotFound`.
"""

from __future__ import annotations

from gateway.audit import store, tiles
from gateway.audit.tiles import Bundle, Tile
from gateway.errors import GatewayError, NotFound
from gateway.runtime import Runtime


class TileNotFound(NotFound):
    """No such tile or bundle in the log: a malformed path, or one beyond the log's head."""

    slug, title = "tile-not-found", "No such tile"


class EntryTooLargeForBundle(GatewayError):
    """An entry is longer than an entry bundle's uint16 length can say (65,535 bytes)."""

    slug, title = "entry-too-large", "Entry too large for an entry bundle"


def parse(path: str) -> Tile | Bundle:
    """The tile or bundle a canonical tlog-tiles path names (``tile/...``), else 404."""
    try:
        return tiles.parse_path(path)
    except tiles.TileError as exc:
        raise TileNotFound(f"{path[:200]!r} names no tile: {exc}") from None


def _check_exists(what: Tile | Bundle, size: int) -> None:
    level = what.level if isinstance(what, Tile) else 0
    have = tiles.tile_width(level, what.index, size)
    if have < what.width:
        holds = f"{have} of its hashes" if have else "none of it"
        raise TileNotFound(f"{what.path()} is not in the log yet: its {size} entries hold {holds}")


def hash_tile(rt: Runtime, tile: Tile) -> bytes:
    """The bytes of ``tile``: its hashes, from the stored subtrees."""
    with rt.db.session() as session:
        _check_exists(tile, store.size(session))
        return tiles.build_hash_tile(tile, lambda ids: store.tile_hashes(session, ids))


def entry_bundle(rt: Runtime, bundle: Bundle) -> bytes:
    """The bytes of ``bundle``: its entries' exact leaf bytes, each with its uint16 length."""
    with rt.db.session() as session:
        _check_exists(bundle, store.size(session))
        first, end = bundle.leaf_range()
        leaves = (leaf for _, leaf in store.iter_leaves(session, first, end))
        try:
            return tiles.encode_entry_bundle(leaves)
        except tiles.EntryTooLarge as exc:
            raise EntryTooLargeForBundle(
                f"{bundle.path()} cannot be served: {exc}; read it from /v1/audit/entries"
            ) from None
