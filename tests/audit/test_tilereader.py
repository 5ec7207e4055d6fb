"""Reading a tree from its tiles alone: roots and proofs against the naive RFC 6962 tree.

The tiles come from what the audit store keeps (every complete subtree, tlog-tiles "Merkle
Tree": hash i of tile n at level L is node (8L, n*256+i)), through the real store for one
test; every tile is authenticated against the checkpoint's root before it is used.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit import merkle, store, tiles
from gateway.audit.merkle import NodeID, ProofError
from gateway.audit.tilereader import TileReader
from gateway.audit.tiles import Tile
from gateway.db import Database
from tests.audit import reference
from tests.audit.conftest import fill
from tests.audit.test_tiles import StoredTree


def _served(tree: StoredTree) -> Callable[[Tile], bytes]:
    """A tile server: the tiles of the tree at its current size, by path."""
    published = tree.tiles()
    return lambda tile: published[tile.path()]


def _leaves(n: int) -> list[bytes]:
    return [b"entry %d" % i for i in range(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(min_value=1, max_value=1100))
def test_roots_and_proofs_from_tiles_match_the_naive_tree(data: st.DataObject, n: int) -> None:
    leaves = _leaves(n)
    tree = StoredTree(leaves)
    reader = TileReader(n, reference.mth(leaves), _served(tree))
    index = data.draw(st.integers(0, n - 1), label="index")
    size = data.draw(st.integers(index + 1, n), label="size")
    old = data.draw(st.integers(0, size), label="old")
    assert reader.root_at(size) == reference.mth(leaves[:size])
    assert reader.leaf_hash(index) == merkle.leaf_hash(leaves[index])
    assert reader.inclusion_proof(index, size) == reference.path(index, leaves[:size])
    assert reader.consistency_proof(old, size) == reference.proof(old, leaves[:size])
    merkle.verify_inclusion(
        index, n, merkle.leaf_hash(leaves[index]), reader.inclusion_proof(index), reader.root
    )


def test_a_tree_with_three_tile_levels_reads_back() -> None:
    """tlog-tiles "Partial Tiles": the 70,000-entry example has tiles on levels 0, 1 and 2."""
    n = 70_000
    leaves = _leaves(n)
    tree = StoredTree(leaves)
    fetched: list[str] = []
    published = tree.tiles()

    def fetch(tile: Tile) -> bytes:
        fetched.append(tile.path())
        return published[tile.path()]

    reader = TileReader(n, tree.range.root(), fetch)
    # The root alone needs exactly the three partial tiles.
    assert sorted(fetched) == ["tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1"]
    proof = reader.inclusion_proof(12_345)
    merkle.verify_inclusion(12_345, n, merkle.leaf_hash(leaves[12_345]), proof, tree.range.root())
    assert "tile/0/048" in fetched and "tile/1/000" in fetched
    old_root = merkle.CompactRange()
    for leaf in leaves[:65_537]:
        old_root.append(merkle.leaf_hash(leaf))
    merkle.verify_consistency(
        65_537, n, reader.consistency_proof(65_537), old_root.root(), tree.range.root()
    )
    bundle = tiles.encode_entry_bundle(leaves[256 * 100 : 256 * 101])
    assert reader.entries(100, bundle) == leaves[256 * 100 : 256 * 101]


def test_the_empty_tree_needs_no_tile() -> None:
    reader = TileReader(0, merkle.empty_root(), lambda tile: pytest.fail("fetched a tile"))
    assert reader.root_at(0) == merkle.empty_root()
    with pytest.raises(ProofError):
        TileReader(0, merkle.leaf_hash(b""), lambda tile: b"")


def test_a_wrong_root_or_a_bad_edge_tile_is_refused_up_front() -> None:
    tree = StoredTree(_leaves(600))
    fetch = _served(tree)
    with pytest.raises(ProofError, match="fold"):
        TileReader(600, merkle.leaf_hash(b"not the root"), fetch)

    def flipped(tile: Tile) -> bytes:
        data = bytearray(fetch(tile))
        if tile.path() == "tile/0/002.p/88":
            data[5] ^= 1
        return bytes(data)

    with pytest.raises(ProofError):
        TileReader(600, tree.range.root(), flipped)
    with pytest.raises(ProofError, match="bad tile"):
        TileReader(600, tree.range.root(), lambda tile: fetch(tile)[:-1])


def test_a_tampered_full_tile_is_refused_when_it_is_used() -> None:
    tree = StoredTree(_leaves(600))
    fetch = _served(tree)

    def tampered(tile: Tile) -> bytes:
        data = bytearray(fetch(tile))
        if tile.path() == "tile/0/001":
            data[-1] ^= 1
        return bytes(data)

    reader = TileReader(600, tree.range.root(), tampered)  # the edge tiles are fine
    assert reader.leaf_hash(10) == merkle.leaf_hash(b"entry 10")
    with pytest.raises(ProofError, match="does not hash into"):
        reader.leaf_hash(300)
    with pytest.raises(ProofError):
        reader.inclusion_proof(511)


def test_entry_bundles_are_checked_against_the_level_0_tile() -> None:
    leaves = _leaves(300)
    reader = TileReader(300, StoredTree(leaves).range.root(), _served(StoredTree(leaves)))
    assert reader.entries(1, tiles.encode_entry_bundle(leaves[256:])) == leaves[256:]
    forged = leaves[256:299] + [b"entry 9999"]
    with pytest.raises(ProofError, match="entry 299"):
        reader.entries(1, tiles.encode_entry_bundle(forged))
    with pytest.raises(ProofError, match="bad entry bundle"):
        reader.entries(1, tiles.encode_entry_bundle(leaves[256:299]))


def test_nodes_outside_the_tree_are_refused() -> None:
    reader = TileReader(5, StoredTree(_leaves(5)).range.root(), _served(StoredTree(_leaves(5))))
    for node in (NodeID(0, 5), NodeID(3, 0), NodeID(1, 2)):
        with pytest.raises(ValueError):
            reader.hashes([node])
    assert reader.hashes([NodeID(2, 0), NodeID(0, 4)])[1] == merkle.leaf_hash(b"entry 4")
    with pytest.raises(ValueError):
        reader.inclusion_proof(5)
    with pytest.raises(ValueError):
        reader.consistency_proof(3, 6)


def test_tiles_built_from_the_audit_store_read_back_to_its_root(db: Database) -> None:
    """The store keeps every complete subtree: tiles come straight out of its stored hashes."""
    fill(db, 300)
    with db.session() as s:
        size = store.size(s)
        root = store.root(s, size)
        built = {
            t.path(): tiles.build_hash_tile(t, lambda ids: store._hashes(s, ids))
            for t in tiles.new_tiles(0, size)
        }
        leaves = [leaf for _, leaf in store.iter_leaves(s)]
        proof = store.inclusion_proof(s, 257, size)
    assert sorted(built) == ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"]
    reader = TileReader(size, root, lambda tile: built[tile.path()])
    assert reader.inclusion_proof(257) == proof
    assert reader.entries(1, tiles.encode_entry_bundle(leaves[256:])) == leaves[256:]
    assert reader.root_at(100) == reference.mth(leaves[:100])
