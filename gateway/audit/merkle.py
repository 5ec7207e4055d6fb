"""RFC 6962 / RFC 9162 Merkle tree math: hashes, node ids, proofs. Pure functions, no storage.

Design note, by the section of RFC 9162 each piece implements:

- §2.1.1 (Merkle Tree Hash): ``leaf_hash`` = SHA-256(0x00 || leaf), ``node_hash`` =
  SHA-256(0x01 || left || right), ``empty_root`` = SHA-256("").
- A tree of size n is the sequence of *complete* (perfect) subtrees given by the binary
  representation of n. A node is named by its :class:`NodeID` (level, index): it covers the
  leaves ``[index * 2**level, (index + 1) * 2**level)``. Only complete subtrees are ever stored
  by the log; any other node of a proof ("ephemeral", on the right border of the tree) is
  recomputed from the complete subtrees that cover its range.
- :func:`inclusion_nodes` (§2.1.3.1) and :func:`consistency_nodes` (§2.1.4.1) name the nodes a
  proof needs, as transparency-dev/merkle ``proof/proof.go`` does; the caller fetches their
  hashes and :meth:`ProofNodes.rehash` folds the ephemeral run into one proof hash.
- :func:`root_from_inclusion` / :func:`verify_inclusion` (§2.1.3.2) and
  :func:`verify_consistency` (§2.1.4.2) check proofs, with the edge-case policy of
  transparency-dev/merkle ``proof/verify.go`` (a consistency proof from size 0 is an error).
- :class:`CompactRange` keeps the right border of a growing tree (the hashes of the complete
  subtrees of ``[0, size)``): appending a leaf costs O(log n) hashes and names the new
  complete subtrees it creates.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

LEAF_HASH_PREFIX = b"\x00"
NODE_HASH_PREFIX = b"\x01"
HASH_SIZE = 32


class ProofError(ValueError):
    """A proof does not verify, or its arguments cannot describe a proof."""


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of one leaf's exact bytes."""
    return hashlib.sha256(LEAF_HASH_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of an interior node from its children's hashes."""
    return hashlib.sha256(NODE_HASH_PREFIX + left + right).digest()


def empty_root() -> bytes:
    """RFC 9162 §2.1.1: the root of the empty tree, SHA-256 of the empty string."""
    return hashlib.sha256(b"").digest()


@dataclass(frozen=True, order=True)
class NodeID:
    """A node of the tree: ``level`` 0 are leaves; it covers ``2**level`` leaves from ``index << level``."""

    level: int
    index: int

    def parent(self) -> NodeID:
        return NodeID(self.level + 1, self.index >> 1)

    def sibling(self) -> NodeID:
        return NodeID(self.level, self.index ^ 1)

    def coverage(self) -> tuple[int, int]:
        """The leaf range ``[begin, end)`` under this node."""
        return self.index << self.level, (self.index + 1) << self.level


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The complete subtrees that exactly cover ``[begin, end)``, left to right (largest aligned first)."""
    if not 0 <= begin <= end:
        raise ValueError(f"invalid range [{begin}, {end})")
    nodes: list[NodeID] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, _trailing_zeros(begin))
        nodes.append(NodeID(level, begin >> level))
        begin += 1 << level
    return nodes


def root_nodes(size: int) -> list[NodeID]:
    """The complete subtrees whose hashes make the root of a tree of ``size`` leaves, left to right."""
    return range_nodes(0, size)


def root_from_nodes(hashes: Sequence[bytes]) -> bytes:
    """Fold the hashes of :func:`root_nodes` (left to right) into the tree's root (RFC 9162 §2.1.1)."""
    if not hashes:
        return empty_root()
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


@dataclass(frozen=True)
class ProofNodes:
    """The node ids a proof needs, in proof order.

    ``ids[begin:end]`` (if more than one) are the complete subtrees covering one ephemeral
    right-border node, lowest level first: :meth:`rehash` folds them into that node's hash.
    """

    ids: tuple[NodeID, ...]
    begin: int = 0
    end: int = 0

    def skip_first(self) -> ProofNodes:
        return ProofNodes(self.ids[1:], max(self.begin - 1, 0), max(self.end - 1, 0))

    def rehash(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Turn the hashes of ``ids`` (same order) into the proof's list of hashes."""
        if len(hashes) != len(self.ids):
            raise ValueError(f"got {len(hashes)} hashes for {len(self.ids)} nodes")
        proof = list(hashes[: self.begin])
        if self.begin < self.end:
            h = hashes[self.begin]
            for left in hashes[self.begin + 1 : self.end]:
                h = node_hash(left, h)
            proof.append(h)
        proof.extend(hashes[self.end :])
        return proof


def _nodes(index: int, level: int, size: int) -> ProofNodes:
    """Nodes proving node (level, index) into a tree of ``size``: itself, then the proof."""
    inner = (index ^ (size >> level)).bit_length() - 1
    fork = NodeID(level + inner, index >> inner)
    begin, end = fork.coverage()
    node = NodeID(level, index)
    ids = [node]
    while node.level < fork.level:
        ids.append(node.sibling())
        node = node.parent()
    first = len(ids)
    ids.extend(reversed(range_nodes(end, size)))
    last = len(ids)
    ids.extend(reversed(range_nodes(0, begin)))
    return ProofNodes(tuple(ids), first, last)


def inclusion_nodes(index: int, size: int) -> ProofNodes:
    """RFC 9162 §2.1.3.1: the nodes of the inclusion proof of leaf ``index`` in a tree of ``size``."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of bounds for tree size {size}")
    return _nodes(index, 0, size).skip_first()


def consistency_nodes(size1: int, size2: int) -> ProofNodes:
    """RFC 9162 §2.1.4.1: the nodes of the consistency proof from ``size1`` to ``size2``.

    Empty when ``size1 == size2`` or ``size1 == 0`` (nothing to prove).
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"invalid consistency range {size1} -> {size2}")
    if size1 == size2 or size1 == 0:
        return ProofNodes(())
    level = _trailing_zeros(size1)
    index = (size1 - 1) >> level
    nodes = _nodes(index, level, size2)
    # When size1 is a power of two its root is the seed the verifier already knows.
    return nodes.skip_first() if index == 0 else nodes


def _decomp_inclusion(index: int, size: int) -> tuple[int, int]:
    """How many proof hashes are below the fork (inner) and on the right border (border)."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def _check_match(calculated: bytes, expected: bytes, what: str) -> None:
    if not hmac.compare_digest(calculated, expected):
        raise ProofError(
            f"{what} mismatch: calculated {calculated.hex()}, expected {expected.hex()}"
        )


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root implied by an inclusion proof of ``leaf_hash`` at ``index``."""
    if not isinstance(index, int) or not isinstance(size, int):
        raise TypeError("index and size must be integers")
    if index < 0 or index >= size:
        raise ProofError(f"index is beyond size: {index} >= {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash has size {len(leaf_hash)}, want {HASH_SIZE}")
    inner, border = _decomp_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    res = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``; raise :class:`ProofError` if not."""
    _check_match(root_from_inclusion(index, size, leaf_hash, proof), root, "root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 §2.1.4.2: check that the tree (size2, root2) extends (size1, root1).

    Raises :class:`ProofError`. As in transparency-dev/merkle, a proof from size 0 is an
    error (it proves nothing), and equal sizes need an empty proof and equal roots.
    """
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 <= 0:
        raise ProofError("consistency proof from an empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("size1 == size2, but the proof is not empty")
        _check_match(root1, root2, "root")
        return
    if not proof:
        raise ProofError("empty proof")
    inner, border = _decomp_inclusion(size1 - 1, size2)
    shift = _trailing_zeros(size1)
    inner -= shift
    # The proof starts with the root of the subtree of size 2**shift ending at size1,
    # unless size1 is that very power of two, whose root is root1.
    seed, start = proof[0], 1
    if size1 == 1 << shift:
        seed, start = root1, 0
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    _check_match(hash1, root1, "root1")
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    _check_match(hash2, root2, "root2")


class CompactRange:
    """The right border of a tree of ``size`` leaves: the hashes of :func:`root_nodes` (size).

    Appending a leaf hash merges equal-sized complete subtrees, O(log n) hashes, and returns
    every complete subtree it created (the leaf itself first), for a store to keep.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(
                f"a tree of size {size} has {bin(size).count('1')} border hashes, got {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeID, bytes]]:
        created = [(NodeID(0, self.size), leaf_hash)]
        node, h = created[0]
        while node.index & 1:
            h = node_hash(self.hashes.pop(), h)
            node = node.parent()
            created.append((node, h))
        self.hashes.append(h)
        self.size += 1
        return created

    def root(self) -> bytes:
        return root_from_nodes(self.hashes)
