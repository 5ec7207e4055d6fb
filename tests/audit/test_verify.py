"""Offline verification of exports, and the tampering it must catch."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from gateway.audit import leaf as leafmod
from gateway.audit import merkle, note, store, verify
from gateway.audit.note import Checkpoint
from gateway.db import Database
from tests.audit.conftest import ORIGIN, add_entry, fill

N = 40
SPARSE = (10, 20, 30)


@pytest.fixture
def log(db: Database, signer: note.Signer) -> dict[int, str]:
    """A log of N entries; the checkpoint the gateway signed at every size from 0 to N."""
    saved = {}
    with db.session() as s:
        saved[0] = store.sign_checkpoint(s, signer, ORIGIN)
    for i in range(N):
        with db.session() as s:
            add_entry(s, i)
            saved[i + 1] = store.sign_checkpoint(s, signer, ORIGIN)
    return saved


def _export(db: Database, signer: note.Signer) -> list[str]:
    with db.session() as s:
        return list(store.export(s, signer, ORIGIN))


def _leaves(db: Database) -> list[bytes]:
    with db.session() as s:
        return [x for _, x in store.iter_leaves(s)]


def _forge(leaves: list[bytes], signer: note.Signer) -> str:
    """A checkpoint over ``leaves`` signed with the log's own key: the strongest attacker."""
    rng = merkle.CompactRange()
    for x in leaves:
        rng.append(merkle.leaf_hash(x))
    return note.sign_checkpoint(Checkpoint(ORIGIN, rng.size, rng.root()), signer)


def _entry(index: int, **changes: object) -> bytes:
    fields: dict = {
        "index": index,
        "time": "2026-11-26T12:00:00Z",
        "actor": "prn_x",
        "org": "agency-a",
        "role": "evaluator",
        "action": "content.download",
        "artifact": "art_1",
        "grant": None,
        "outcome": "ok",
        "request_id": None,
        "ip": None,
        "details": {},
    }
    fields.update(changes)
    return leafmod.canonical_json(fields)


def _renumber(leaves: list[bytes], start: int) -> list[bytes]:
    out = leaves[:start]
    for i, x in enumerate(leaves[start:], start=start):
        e = json.loads(x)
        e["index"] = i
        out.append(leafmod.canonical_json(e))
    return out


def test_an_intact_export_verifies(
    db: Database, signer: note.Signer, log: dict[int, str], tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(_export(db, signer)))
    with db.session() as s:
        proofs = {k: store.consistency_proof(s, k, N) for k in SPARSE}
    with path.open() as f:
        verdict = verify.verify_export(
            f, signer.verifier_key, earlier=[log[k] for k in SPARSE], proofs=proofs, origin=ORIGIN
        )
    assert verdict.ok, verdict.message
    assert (verdict.size, verdict.first_bad_index, verdict.intact_prefix) == (N, None, N)
    assert "\n" not in verdict.message
    leaves, checkpoint = verify.read_export(path.read_text().splitlines(keepends=True))
    assert leaves == _leaves(db)
    assert verify.verify_log(leaves, checkpoint, signer.verifier_key, earlier=list(log.values())).ok


def test_a_wrong_consistency_proof_is_reported(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    with db.session() as s:
        wrong = store.consistency_proof(s, 19, N)
    v = verify.verify_export(
        _export(db, signer), signer.verifier_key, earlier=[log[20]], proofs={20: wrong}
    )
    assert not v.ok and "consistency proof from size 20" in v.message


def test_the_checkpoint_must_be_signed_by_the_trusted_key(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    other = note.Signer.generate(ORIGIN)
    v = verify.verify_export(_export(db, signer), other.verifier_key)
    assert not v.ok and v.message.startswith("the checkpoint does not verify")
    v = verify.verify_export(_export(db, signer), signer.verifier_key, origin="another.log/audit")
    assert not v.ok
    foreign = note.sign_checkpoint(
        Checkpoint("another.log/audit", 1, merkle.leaf_hash(b"x")), signer
    )
    v = verify.verify_export(_export(db, signer), signer.verifier_key, earlier=[foreign])
    assert not v.ok and "another log" in v.message


def test_a_changed_byte_in_the_database_is_caught(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    original = _leaves(db)[13]
    tampered = original.replace(b'"actor":"prn_1"', b'"actor":"prn_2"')
    assert tampered != original
    with db.session() as s:
        s.execute(update(store.Entry).where(store.Entry.index == 13).values(leaf=tampered))
    export = _export(db, signer)  # the gateway's own head still commits to the original
    v = verify.verify_export(export, signer.verifier_key)
    assert not v.ok and "do not hash to the root" in v.message
    v = verify.verify_export(export, signer.verifier_key, earlier=[log[k] for k in SPARSE])
    assert not v.ok and v.first_bad_index is None and v.intact_prefix == 10
    assert "between 10 and 19" in v.message
    v = verify.verify_export(export, signer.verifier_key, earlier=list(log.values()))
    assert (v.ok, v.first_bad_index, v.intact_prefix) == (False, 13, 13)


def test_a_byte_that_breaks_the_entry_is_pinned_by_itself(
    db: Database, signer: note.Signer
) -> None:
    fill(db, 20)
    leaves = _leaves(db)
    leaves[7] = leaves[7][:-1] + b" "
    v = verify.verify_log(leaves, _forge(leaves, signer), signer.verifier_key)
    assert (v.ok, v.first_bad_index) == (False, 7) and "malformed" in v.message


Tamper = Callable[[list[bytes]], list[bytes]]

CASES: dict[str, tuple[Tamper, int, int]] = {
    # name: (tampering, first bad index with sparse saved checkpoints, with dense ones)
    "delete": (lambda x: x[:13] + x[14:], 13, 13),
    "swap": (lambda x: x[:13] + [x[14], x[13]] + x[15:], 13, 13),
    "insert": (lambda x: x[:13] + [_entry(13)] + x[13:], 14, 13),
    "insert-renumbered": (lambda x: _renumber(x[:13] + [_entry(13)] + x[13:], 13), -1, 13),
    "delete-renumbered": (lambda x: _renumber(x[:13] + x[14:], 13), -1, 13),
    "rewrite-from-25": (
        lambda x: x[:25] + [_entry(i, actor="someone-else") for i in range(25, N)],
        -1,
        25,
    ),
}
# A truncated log re-signed at its new size is, offline, exactly an export made earlier (the
# first 27 entries and their root are the genuine ones): that case is the stale export below.


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("resigned", [True, False], ids=["resigned", "old-checkpoint"])
def test_tampering_is_caught_against_saved_checkpoints(
    name: str, resigned: bool, db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    tamper, sparse_first, dense_first = CASES[name]
    leaves = tamper(_leaves(db))
    checkpoint = _forge(leaves, signer) if resigned else log[N]
    # Without saved checkpoints, a re-signed log with consistent index fields passes: that is
    # what the saved checkpoints are for.
    consistent_fields = name.endswith("renumbered") or name.startswith("rewrite")
    assert verify.verify_log(leaves, checkpoint, signer.verifier_key).ok is (
        resigned and consistent_fields
    )
    lines = list(verify.export_lines(enumerate(leaves), checkpoint))

    sparse = verify.verify_export(lines, signer.verifier_key, earlier=[log[k] for k in SPARSE])
    assert not sparse.ok, sparse.message
    # -1: no single entry can be named, only the range between two saved checkpoints.
    assert sparse.first_bad_index == (None if sparse_first < 0 else sparse_first), sparse.message
    assert sparse.intact_prefix <= dense_first
    if sparse_first < 0:
        assert f"between {sparse.intact_prefix} and " in sparse.message

    dense = verify.verify_export(lines, signer.verifier_key, earlier=list(log.values()))
    assert (dense.ok, dense.first_bad_index) == (False, dense_first), dense.message
    assert dense.intact_prefix <= dense_first


def test_a_shrunk_log_is_named_even_with_one_saved_checkpoint(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    leaves = _leaves(db)[:27]
    v = verify.verify_log(leaves, _forge(leaves, signer), signer.verifier_key, earlier=[log[30]])
    assert (v.ok, v.first_bad_index) == (False, 27) and "shrank" in v.message


def test_malformed_exports_are_refused(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    lines = _export(db, signer)
    for bad in (
        lines[:-1],
        lines + ['{"index": 99, "leaf": "AA=="}\n'],
        ["not json\n"] + lines,
        [lines[0].replace('"leaf": "', '"leaf": "!')] + lines[1:],
    ):
        v = verify.verify_export(bad, signer.verifier_key)
        assert not v.ok and v.message.startswith("the export is malformed")
    with pytest.raises(verify.ExportError):
        verify.read_export([lines[1]] + lines[2:])
    renumbered = [json.dumps({"index": 5, "leaf": json.loads(lines[0])["leaf"]}) + "\n"] + lines[1:]
    v = verify.verify_export(renumbered, signer.verifier_key)
    assert (v.ok, v.first_bad_index) == (False, 0)


def test_leaf_decoding_refuses_what_the_log_cannot_write() -> None:
    good = _entry(3)
    assert leafmod.decode_leaf(good)["index"] == 3
    for bad in (
        b"\xff",
        b"[]",
        good.replace(b'"index":3', b'"index":-3'),
        good.replace(b'"index":3', b'"index":true'),
        good.replace(b",", b", ", 1),
        _entry(3, extra=1),
        base64.b64encode(good),
    ):
        with pytest.raises(leafmod.LeafError):
            leafmod.decode_leaf(bad)


def test_an_export_older_than_a_saved_checkpoint_is_stale_not_a_shrunk_log(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    """An export made at size 27 checked against a checkpoint saved later, at 30: the export
    is out of date, which is no sign of tampering, and no entry of it is bad."""
    leaves = _leaves(db)[:27]
    lines = list(verify.export_lines(enumerate(leaves), log[27]))
    v = verify.verify_export(lines, signer.verifier_key, earlier=[log[10], log[30]])
    assert not v.ok and v.first_bad_index is None
    assert v.message.startswith("the export is older than a saved checkpoint: it holds 27 entries")
    assert "shrank" not in v.message and "first bad entry" not in v.message
    assert verify.verify_export(lines, signer.verifier_key, earlier=[log[10], log[27]]).ok


def test_a_truncated_export_under_the_checkpoint_of_the_whole_log_names_where_it_ends(
    db: Database, signer: note.Signer, log: dict[int, str]
) -> None:
    leaves = _leaves(db)[:27]
    lines = list(verify.export_lines(enumerate(leaves), log[N]))
    v = verify.verify_export(lines, signer.verifier_key, earlier=[log[k] for k in SPARSE])
    assert (v.ok, v.first_bad_index) == (False, 27), v.message
