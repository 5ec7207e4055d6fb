"""RFC 6962 tree math against the transparency-dev vectors and a naive reference tree."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import merkle
from gateway.audit.merkle import NodeID, ProofError
from tests.audit import reference
from tests.audit.vectorfiles import need, vector_files
from tests.vectors import vectors_dir


def _b64(v: str | None) -> bytes:
    return base64.b64decode(v) if v is not None else b""


def _reference_tree() -> dict:
    return json.loads((vectors_dir("merkle") / "rfc6962_reference_tree.json").read_text())


@pytest.mark.parametrize("path", vector_files("merkle", "transparency-dev/inclusion/**/*.json"))
def test_inclusion_vector(path: Path | None) -> None:
    v = json.loads(need("merkle", path).read_text())
    proof = [_b64(h) for h in v["proof"] or []]
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), proof, _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", vector_files("merkle", "transparency-dev/consistency/**/*.json"))
def test_consistency_vector(path: Path | None) -> None:
    v = json.loads(need("merkle", path).read_text())
    proof = [_b64(h) for h in v["proof"] or []]
    args = (v["size1"], v["size2"], proof, _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_vector_directories_are_all_there() -> None:
    base = vectors_dir("merkle") / "transparency-dev"
    assert len(list(base.glob("inclusion/**/*.json"))) == 98
    assert len(list(base.glob("consistency/**/*.json"))) == 98


def test_reference_tree_roots_and_nodes() -> None:
    tree = _reference_tree()
    leaves = [bytes.fromhex(x) for x in tree["leaves"]]
    rng = merkle.CompactRange()
    stored: dict[NodeID, bytes] = {}
    for leaf in leaves:
        stored.update(rng.append(merkle.leaf_hash(leaf)))
    for level, hashes in enumerate(tree["node_hashes"]["levels"]):
        for index, h in enumerate(hashes):
            assert stored[NodeID(level, index)].hex() == h
    roots = tree["root_hashes"]["by_tree_size"]
    assert merkle.empty_root().hex() == roots["0"] if isinstance(roots, dict) else roots[0]
    for n in range(len(leaves) + 1):
        want = roots[str(n)] if isinstance(roots, dict) else roots[n]
        hashes = [stored[node] for node in merkle.root_nodes(n)]
        assert merkle.root_from_nodes(hashes).hex() == want
        assert reference.mth(leaves[:n]).hex() == want


def test_reference_tree_proofs_are_the_ones_we_build() -> None:
    tree = _reference_tree()
    leaves = [bytes.fromhex(x) for x in tree["leaves"]]
    stored: dict[NodeID, bytes] = {}
    rng = merkle.CompactRange()
    for leaf in leaves:
        stored.update(rng.append(merkle.leaf_hash(leaf)))
    for p in tree["inclusion_proofs"]:
        nodes = merkle.inclusion_nodes(p["leaf_index"], p["tree_size"])
        built = nodes.rehash([stored[i] for i in nodes.ids])
        assert [h.hex() for h in built] == p["proof"]
        merkle.verify_inclusion(
            p["leaf_index"],
            p["tree_size"],
            merkle.leaf_hash(bytes.fromhex(p["leaf"])),
            built,
            bytes.fromhex(p["root"]),
        )
    for p in tree["consistency_proofs"]:
        nodes = merkle.consistency_nodes(p["size1"], p["size2"])
        built = nodes.rehash([stored[i] for i in nodes.ids])
        assert [h.hex() for h in built] == p["proof"]
        merkle.verify_consistency(
            p["size1"], p["size2"], built, bytes.fromhex(p["root1"]), bytes.fromhex(p["root2"])
        )


def test_hash_prefixes_are_the_rfc_ones() -> None:
    assert merkle.LEAF_HASH_PREFIX == b"\x00" and merkle.NODE_HASH_PREFIX == b"\x01"
    assert (
        merkle.empty_root().hex()
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.leaf_hash(b"") != merkle.node_hash(b"", b"")


def test_range_nodes_cover_exactly() -> None:
    for begin in range(0, 40):
        for end in range(begin, 70):
            covered = []
            for node in merkle.range_nodes(begin, end):
                lo, hi = node.coverage()
                covered.extend(range(lo, hi))
            assert covered == list(range(begin, end))


def test_inclusion_arguments_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(TypeError):
        merkle.verify_inclusion(b"\x00" * 32, 0, 1, [], b"\x00" * 32)  # type: ignore[arg-type]


# Fuzz the fast code against the naive reference.

leaf_lists = st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=64, unique=True)


def _tree(leaves: list[bytes]) -> dict[NodeID, bytes]:
    stored: dict[NodeID, bytes] = {}
    rng = merkle.CompactRange()
    for leaf in leaves:
        stored.update(rng.append(merkle.leaf_hash(leaf)))
    assert rng.root() == reference.mth(leaves)
    return stored


@settings(max_examples=80, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_inclusion_matches_reference(leaves: list[bytes], data: st.DataObject) -> None:
    stored = _tree(leaves)
    size = data.draw(st.integers(1, len(leaves)))
    index = data.draw(st.integers(0, size - 1))
    nodes = merkle.inclusion_nodes(index, size)
    proof = nodes.rehash([stored[i] for i in nodes.ids])
    assert proof == reference.path(index, leaves[:size])
    root = reference.mth(leaves[:size])
    lh = merkle.leaf_hash(leaves[index])
    merkle.verify_inclusion(index, size, lh, proof, root)
    assert merkle.root_from_inclusion(index, size, lh, proof) == root
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index] + b"x"), proof, root)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(other, size, lh, proof, root)
    if size < len(leaves):
        # The proof for one size does not verify against the tree of another size.
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size + 1, lh, proof, reference.mth(leaves[: size + 1]))


@settings(max_examples=80, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_consistency_matches_reference(leaves: list[bytes], data: st.DataObject) -> None:
    stored = _tree(leaves)
    size2 = data.draw(st.integers(1, len(leaves)))
    size1 = data.draw(st.integers(1, size2))
    nodes = merkle.consistency_nodes(size1, size2)
    proof = nodes.rehash([stored[i] for i in nodes.ids])
    assert proof == reference.proof(size1, leaves[:size2])
    root1, root2 = reference.mth(leaves[:size1]), reference.mth(leaves[:size2])
    merkle.verify_consistency(size1, size2, proof, root1, root2)
    if size1 < size2:
        with pytest.raises(ProofError):
            merkle.verify_consistency(
                size1, size2, proof, root1, reference.mth(leaves[: size2 - 1] + [b""])
            )
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, merkle.leaf_hash(b"other"), root2)
    if size1 > 1:
        with pytest.raises(ProofError):
            merkle.verify_consistency(
                size1 - 1, size2, proof, reference.mth(leaves[: size1 - 1]), root2
            )
