"""One check that a gateway's tree extends one seen before, for `audit mine --since` and the
lab-custody approval alike: the empty tree is extended by every tree (no proof exists from
it), a tree of the same size only by itself, any other only with a valid proof."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway.audit import merkle
from gateway.audit.note import Checkpoint
from gateway.client.auditmine import extends
from tests.audit import reference

LEAVES = [f"entry {i}".encode() for i in range(7)]


def root(n: int) -> bytes:
    return reference.mth(LEAVES[:n]) if n else merkle.empty_root()


class Proofs:
    """Serves the consistency proofs of the tree of :data:`LEAVES`, counting the calls."""

    def __init__(self, tamper: bool = False) -> None:
        self.calls, self.tamper = 0, tamper

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        hashes = reference.proof(params["old"], LEAVES[: params["new"]])
        if self.tamper:
            hashes = [bytes(32), *hashes[1:]]
        return {"hashes": [base64.b64encode(h).decode() for h in hashes]}


def cp(n: int) -> Checkpoint:
    return Checkpoint(origin="test/log", size=n, root=root(n), extensions=())


def test_the_empty_tree_is_extended_by_every_tree_without_a_proof() -> None:
    api = Proofs()
    extends(api, 0, root(0), cp(5))  # type: ignore[arg-type]
    assert api.calls == 0


def test_a_tree_extends_an_older_one_only_with_a_valid_proof() -> None:
    extends(Proofs(), 3, root(3), cp(7))  # type: ignore[arg-type]
    with pytest.raises(merkle.ProofError):
        extends(Proofs(tamper=True), 3, root(3), cp(7))  # type: ignore[arg-type]
    with pytest.raises(merkle.ProofError):
        extends(Proofs(), 3, bytes(32), cp(7))  # type: ignore[arg-type]


def test_a_tree_of_the_same_size_extends_only_itself() -> None:
    api = Proofs()
    extends(api, 5, root(5), cp(5))  # type: ignore[arg-type]
    with pytest.raises(merkle.ProofError, match="another root"):
        extends(api, 5, bytes(32), cp(5))  # type: ignore[arg-type]
    assert api.calls == 0
