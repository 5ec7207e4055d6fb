"""Per-org chains: what appends link, the heads entry, who an entry concerns, what the verifier rejects."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from gateway.audit import chains, merkle, note, store, verify
from gateway.audit import leaf as leafmod
from gateway.db import Database
from tests.audit.conftest import ORIGIN, T0, add_entry


def _entries(db: Database) -> list[dict]:
    with db.session() as s:
        return [json.loads(leaf) for _, leaf in store.iter_leaves(s)]


def _heads(s: object, **fields: object) -> None:
    add_entry(s, 0, action=leafmod.HEADS_ACTION, actor="cli", org="operator", **fields)


def _forge(leaves: list[bytes], signer: note.Signer) -> str:
    rng = merkle.CompactRange()
    for x in leaves:
        rng.append(merkle.leaf_hash(x))
    return note.sign_checkpoint(note.Checkpoint(ORIGIN, rng.size, rng.root()), signer)


def test_each_entry_links_every_org_it_concerns_to_that_orgs_previous_entry(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0, org="lab-a", subject_org="lab-a")  # 0
        add_entry(s, 1, org="agency-a", subject_org="lab-a")  # 1
        add_entry(s, 2, org="agency-a", subject_org="lab-b")  # 2
    with db.session() as s:  # a new transaction reads the heads from the table
        add_entry(s, 3, org="lab-b", subject_org=None)  # 3
        add_entry(s, 4, org="agency-a", subject_org="lab-a")  # 4
    prevs = [e["prev"] for e in _entries(db)]
    assert prevs == [
        {"lab-a": None},
        {"agency-a": None, "lab-a": 0},
        {"agency-a": 1, "lab-b": None},
        {"lab-b": 2},
        {"agency-a": 2, "lab-a": 1},
    ]
    with db.session() as s:
        assert chains.org_heads(s) == {"lab-a": 4, "agency-a": 4, "lab-b": 3}
        assert [e.index for e in store.entries(s, concerning="lab-a")] == [0, 1, 4]
        assert [e.index for e in store.entries(s, concerning="agency-a")] == [1, 2, 4]
        assert [e.index for e in store.entries(s, 2, concerning="agency-a")] == [2, 4]
        assert [e.concerned() for e in store.entries(s)][2] == ("agency-a", "lab-b")


def test_a_hidden_refusal_concerns_only_the_owner(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0, org="lab-a", subject_org="lab-a")
        add_entry(
            s,
            1,
            org="lab-a",
            subject_org="lab-b",
            action="auth.denied",
            outcome="denied",
            details={"attempted": "artifact.read", "reason": "hidden"},
        )
        assert [e.index for e in store.entries(s, concerning="lab-a")] == [0]
        assert [e.index for e in store.entries(s, concerning="lab-b")] == [1]
    assert _entries(db)[1]["prev"] == {"lab-b": None}


def test_a_publication_pins_each_org_with_its_own_heads_entry(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0, org="lab-a", subject_org="lab-a")
        add_entry(s, 1, org="agency-a", subject_org="lab-b")
        _heads(s)  # 2, 3, 4
        add_entry(s, 5, org="lab-a", subject_org="lab-a")
        run = store.entries(s, 2, 3)
    # One per org with entries before it (its own actor's org has none yet), in name order,
    # each concerning that org alone and naming no other.
    assert [(json.loads(e.leaf)["subject_org"], json.loads(e.leaf)["prev"]) for e in run] == [
        ("agency-a", {"agency-a": 1}),
        ("lab-a", {"lab-a": 0}),
        ("lab-b", {"lab-b": 1}),
    ]
    assert [e.concerned() for e in run] == [("agency-a",), ("lab-a",), ("lab-b",)]
    assert _entries(db)[5]["prev"] == {"lab-a": 3}
    with db.session() as s:
        assert [e.index for e in store.entries(s, concerning="lab-b")] == [1, 4]
        assert [e.index for e in store.entries(s, concerning="lab-a")] == [0, 3, 5]
        assert chains.org_heads(s) == {"agency-a": 2, "lab-a": 5, "lab-b": 4}


def test_a_run_of_heads_entries_is_written_in_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "INTEGRATE_BATCH", 2)
    with db.session() as s:
        for i, org in enumerate(["lab-c", "lab-a", "lab-e", "lab-b", "lab-d"]):
            add_entry(s, i, org=org, subject_org=None)
        _heads(s)  # 5..9, over three batches
    run = _entries(db)[5:]
    assert [e["prev"] for e in run] == [
        {"lab-a": 1},
        {"lab-b": 3},
        {"lab-c": 0},
        {"lab-d": 4},
        {"lab-e": 2},
    ]
    with db.session() as s:
        assert chains.org_heads(s) == {f"lab-{c}": 5 + n for n, c in enumerate("abcde")}


def test_a_rolled_back_savepoint_moves_no_head(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0, org="lab-a", subject_org=None)
        with pytest.raises(RuntimeError), s.begin_nested():
            add_entry(s, 1, org="lab-a", subject_org=None)
            raise RuntimeError("rolled back")
        add_entry(s, 1, org="lab-a", subject_org=None)
    assert [e["prev"] for e in _entries(db)] == [{"lab-a": None}, {"lab-a": 0}]


def test_an_oversized_entry_is_refused_and_changes_nothing(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0, org="lab-a", subject_org=None)
        with pytest.raises(store.EntryTooLarge) as caught:
            add_entry(s, 1, org="lab-a", details={"x": "a" * leafmod.MAX_ENTRY_SIZE})
        assert caught.value.status == 413
        add_entry(s, 1, org="lab-a", subject_org=None)
    with db.session() as s:
        assert store.size(s) == 2
        assert s.scalars(select(chains.EntryOrg.index)).all() == [0, 1]
    assert _entries(db)[1]["prev"] == {"lab-a": 0}


def test_an_appended_log_verifies_with_its_chains(db: Database, signer: note.Signer) -> None:
    with db.session() as s:
        for i in range(12):
            add_entry(s, i)
            if i % 5 == 4:
                _heads(s)
        text = store.sign_checkpoint(s, signer, ORIGIN)
        leaves = [leaf for _, leaf in store.iter_leaves(s)]
    assert verify.verify_log(leaves, text, signer.verifier_key).ok


def _rewrite(leaf: bytes, **changes: object) -> bytes:
    return leafmod.canonical_json({**json.loads(leaf), **changes})


def test_the_verifier_rejects_chains_the_log_did_not_write(
    db: Database, signer: note.Signer
) -> None:
    with db.session() as s:
        for i in range(6):
            add_entry(s, i, org="agency-a", subject_org=("lab-a", "lab-b")[i % 2])
        _heads(s)  # 6 agency-a, 7 lab-a, 8 lab-b
        add_entry(s, 9, org="lab-a", subject_org="lab-a")
        leaves = [leaf for _, leaf in store.iter_leaves(s)]
    e4 = json.loads(leaves[4])
    assert e4["prev"] == {"agency-a": 3, "lab-a": 2}
    cases = {
        # entry 4 skips lab-a's entry 2, as a log hiding it from lab-a's chain would
        "skip": (
            4,
            _rewrite(leaves[4], prev={"agency-a": 3, "lab-a": 0}),
            "links lab-a to entry 0",
        ),
        # lab-b's heads entry names an older head
        "stale-heads": (
            8,
            _rewrite(leaves[8], prev={"lab-b": 3}),
            "links lab-b to entry 3",
        ),
        # lab-a's heads entry also names lab-b (and so would show lab-a lab-b's index)
        "heads-names-another": (
            7,
            _rewrite(leaves[7], prev={"lab-a": 4, "lab-b": 5}),
            "prev does not name exactly",
        ),
        # lab-a's heads entry pins lab-b instead: the run pins lab-b twice, lab-a never
        "run-leaves-out": (
            7,
            _rewrite(leaves[7], subject_org="lab-b", prev={"lab-b": 5}),
            "leave out lab-a",
        ),
        # an entry written in the old format after the new one
        "v1": (
            9,
            leafmod.canonical_json(
                {
                    k: v
                    for k, v in json.loads(leaves[9]).items()
                    if k not in ("v", "prev", "subject_org")
                }
            ),
            "v1 after v2",
        ),
    }
    for name, (at, changed, words) in cases.items():
        forged = [*leaves[:at], changed, *leaves[at + 1 :]]
        v = verify.verify_log(forged, _forge(forged, signer), signer.verifier_key)
        assert (v.ok, v.first_bad_index) == (False, at), (name, v.message)
        assert words in v.message, (name, v.message)


def test_a_v1_log_then_v2_entries_verify(signer: note.Signer) -> None:
    v1 = [
        leafmod.encode_leaf_v1(
            index=i,
            time=T0,
            actor="prn_1",
            org="lab-a",
            role="lab",
            action="upload.create",
            artifact=None,
            grant=None,
            outcome="ok",
            request_id=None,
            ip=None,
            details={},
        )
        for i in range(3)
    ]
    v2 = [
        leafmod.encode_leaf(
            index=3 + i,
            time=T0,
            actor="prn_1",
            org="lab-a",
            role="lab",
            action="upload.create",
            artifact=None,
            grant=None,
            subject_org="lab-a",
            outcome="ok",
            request_id=None,
            ip=None,
            details={},
            prev={"lab-a": None if i == 0 else 2 + i},
        )
        for i in range(2)
    ]
    leaves = v1 + v2
    assert verify.verify_log(leaves, _forge(leaves, signer), signer.verifier_key).ok
    assert verify.verify_log(v1, _forge(v1, signer), signer.verifier_key).ok
