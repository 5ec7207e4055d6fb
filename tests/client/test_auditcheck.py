"""The auditor's verdict: recomputed from the leaves, trusting only the auditor's key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit import merkle, note
from gateway.audit.leaf import encode_leaf
from gateway.client.auditcheck import read_key, verify_file, verify_leaves, write_export
from gateway.client.errors import AuditKeyError

ORIGIN = "test.gateway/audit"


def _leaves(n: int) -> list[bytes]:
    return [
        encode_leaf(
            index=i,
            time=datetime(2026, 11, 27, tzinfo=UTC),
            actor=f"p{i % 3}",
            org="agency",
            role="evaluator",
            action="content.download",
            artifact="art_1",
            grant=None,
            outcome="ok",
            request_id=None,
            ip=None,
            details={},
        )
        for i in range(n)
    ]


def _node(leaves: list[bytes], node: merkle.NodeID) -> bytes:
    begin, end = node.coverage()
    cr = merkle.CompactRange()
    for leaf in leaves[begin:end]:
        cr.append(merkle.leaf_hash(leaf))
    return cr.root()


def _checkpoint(leaves: list[bytes], signer: note.Signer) -> str:
    cr = merkle.CompactRange()
    for leaf in leaves:
        cr.append(merkle.leaf_hash(leaf))
    return note.sign_checkpoint(note.Checkpoint(ORIGIN, len(leaves), cr.root()), signer)


def _consistency(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    def proof(old: int, new: int) -> list[bytes]:
        nodes = merkle.consistency_nodes(old, new)
        return nodes.rehash([_node(leaves, n) for n in nodes.ids])

    return proof


@pytest.fixture
def signer() -> note.Signer:
    return note.Signer.generate(ORIGIN)


def _rows(leaves: list[bytes]) -> list[tuple[int, bytes, None]]:
    return [(i, leaf, None) for i, leaf in enumerate(leaves)]


def test_an_honest_log_verifies_and_extends_the_saved_checkpoint(signer: note.Signer) -> None:
    leaves = _leaves(37)
    old = _checkpoint(leaves[:20], signer)
    verdict = verify_leaves(_checkpoint(leaves, signer), _rows(leaves), signer.verifier_key, old)
    assert verdict.ok and verdict.size == 37
    assert verdict.line().startswith("ok: 37 entries")


def test_another_key_is_refused(signer: note.Signer) -> None:
    leaves = _leaves(5)
    other = note.Signer.generate(ORIGIN)
    verdict = verify_leaves(_checkpoint(leaves, signer), _rows(leaves), other.verifier_key)
    assert not verdict.ok and "does not verify" in verdict.message


def test_a_changed_entry_is_found_by_bisection(signer: note.Signer) -> None:
    leaves = _leaves(50)
    signed = _checkpoint(leaves, signer)
    shown = list(leaves)
    shown[23] = shown[23].replace(b"p2", b"px")
    verdict = verify_leaves(
        signed, _rows(shown), signer.verifier_key, consistency=_consistency(leaves)
    )
    assert not verdict.ok and verdict.first_bad_index == 23
    assert verdict.line().startswith("FAILED: ") and verdict.line().endswith("first bad entry: 23")


def test_a_rewritten_history_breaks_the_saved_checkpoint(signer: note.Signer) -> None:
    leaves = _leaves(30)
    old = _checkpoint(leaves[:10], signer)
    rewritten = list(leaves)
    rewritten[4] = rewritten[4].replace(b"p1", b"p0")
    verdict = verify_leaves(
        _checkpoint(rewritten, signer),
        _rows(rewritten),
        signer.verifier_key,
        old,
        consistency=_consistency(rewritten),
    )
    assert not verdict.ok and "saved checkpoint" in verdict.message
    assert verify_leaves(_checkpoint(leaves, signer), _rows(leaves), signer.verifier_key, old).ok


def test_a_dropped_entry_is_reported(signer: note.Signer) -> None:
    leaves = _leaves(10)
    rows = _rows(leaves)
    del rows[6]
    verdict = verify_leaves(_checkpoint(leaves, signer), rows, signer.verifier_key)
    assert not verdict.ok and verdict.first_bad_index == 6


def test_export_round_trip_and_tamper(tmp_path: Path, signer: note.Signer) -> None:
    leaves = _leaves(12)
    path = tmp_path / "log.jsonl"
    assert write_export(path, _checkpoint(leaves, signer), enumerate(leaves)) == 12
    assert verify_file(path, signer.verifier_key, None).ok
    lines = path.read_text().splitlines()
    record = json.loads(lines[3])
    record["leaf"] = record["leaf"][:-4] + "AAA="
    lines[3] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    assert not verify_file(path, signer.verifier_key, None).ok


def test_key_from_string_or_file(tmp_path: Path, signer: note.Signer) -> None:
    assert read_key(signer.verifier_key) == signer.verifier_key
    (tmp_path / "k").write_text("\n" + signer.verifier_key + "\n")
    assert read_key(str(tmp_path / "k")) == signer.verifier_key
    with pytest.raises(AuditKeyError):
        read_key("nope+00000000+AAAA")


def test_an_entry_listed_unlike_its_leaf_is_reported(signer: note.Signer) -> None:
    leaves = _leaves(8)
    rows = [(i, leaf, json.loads(leaf)) for i, leaf in enumerate(leaves)]
    rows[5][2]["actor"] = "someone-else"
    verdict = verify_leaves(_checkpoint(leaves, signer), rows, signer.verifier_key)
    assert not verdict.ok and verdict.first_bad_index == 5
    assert "differs from its leaf" in verdict.message
    assert verdict.line().endswith("; first bad entry: 5")


def test_a_rewritten_and_resigned_log_never_names_an_entry_outside_the_proven_range(
    signer: note.Signer,
) -> None:
    """Saved checkpoints bound the first change to [5, 20); the rewritten log's own proofs,
    which every prefix of it satisfies, must not move the named entry past that range."""
    leaves = _leaves(30)
    saved = [_checkpoint(leaves[:size], signer) for size in (5, 20, 25)]
    rewritten = list(leaves)
    rewritten[10] = rewritten[10].replace(b"p1", b"p0")
    verdict = verify_leaves(
        _checkpoint(rewritten, signer),
        _rows(rewritten),
        signer.verifier_key,
        saved,
        consistency=_consistency(rewritten),
    )
    assert not verdict.ok
    assert verdict.first_bad_index is None, verdict.message
    assert "between 5 and 19" in verdict.message
    assert "29" not in verdict.message and "first bad entry" not in verdict.message


def test_bisection_stays_inside_the_range_the_saved_checkpoints_leave(signer: note.Signer) -> None:
    """Leaves that fail the current root are bisected, within what the saved ones allow."""
    leaves = _leaves(40)
    saved = [_checkpoint(leaves[:size], signer) for size in (8, 30)]
    shown = list(leaves)
    shown[17] = shown[17].replace(b"p2", b"px")
    verdict = verify_leaves(
        _checkpoint(leaves, signer),
        _rows(shown),
        signer.verifier_key,
        saved,
        consistency=_consistency(leaves),
    )
    assert not verdict.ok and verdict.first_bad_index == 17, verdict.message
    assert verdict.message.endswith("first bad entry: 17 (entries before 8 are proven unchanged)")
