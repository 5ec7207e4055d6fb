"""Sequencing and integration: entries sequenced in their effect's transaction, folded in batches.

Every test runs on SQLite and on PostgreSQL. The tree is read here through the head row and
the tables themselves where a test must see what is not integrated yet; every reader of
:mod:`gateway.audit.store` integrates first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from gateway.audit import integrator, merkle, note, pending, store, verify
from gateway.audit import leaf as leafmod
from gateway.db import Database
from tests.audit import reference
from tests.audit.conftest import ORIGIN, T0, Logs, add_entry, opened


@pytest.fixture
def db(logs: Logs) -> Iterator[Database]:
    with logs() as url, opened(url) as database:
        yield database


def _tree_size(db: Database) -> int:
    """The head row's size, read without integrating anything."""
    with db.session() as s:
        return int(s.scalar(select(store.Head.size)) or 0)


def _waiting(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(pending.Pending)) or 0)


def _sequence(db: Database, ids: range) -> None:
    """Commit one entry per transaction for each of ``ids``, none of them integrated."""
    for i in ids:
        with db.session() as s:
            add_entry(s, i)


def _leaves(db: Database) -> list[bytes]:
    with db.session() as s:
        return [leaf for _, leaf in store.iter_leaves(s)]


def _verifies(db: Database, signer: note.Signer) -> list[bytes]:
    """The log's leaves, after checking the whole log verifies offline with its chains."""
    with db.session() as s:
        text = store.sign_checkpoint(s, signer, ORIGIN)
        leaves = [leaf for _, leaf in store.iter_leaves(s)]
    verdict = verify.verify_log(leaves, text, signer.verifier_key)
    assert verdict.ok, verdict
    return leaves


def test_append_sequences_without_touching_the_tree(db: Database) -> None:
    _sequence(db, range(3))
    assert (_tree_size(db), _waiting(db)) == (0, 3)
    with db.session() as s:
        assert store.size(s) == 3  # a reader integrates first
    assert (_tree_size(db), _waiting(db)) == (3, 0)


def test_batches_smaller_and_larger_than_what_is_pending(db: Database, signer: note.Signer) -> None:
    _sequence(db, range(10))
    with db.session() as s:
        assert store.integrate(s, 3) == 3
    assert (_tree_size(db), _waiting(db)) == (3, 7)
    with db.session() as s:
        assert store.integrate(s, 4) == 4
        assert store.integrate(s, 100) == 3
        assert store.integrate(s, 100) == 0
    assert (_tree_size(db), _waiting(db)) == (10, 0)
    leaves = _verifies(db, signer)
    # In sequence order, with the indices and chains an append straight into the tree made.
    entries = [json.loads(x) for x in leaves]
    assert [e["index"] for e in entries] == list(range(10))
    assert [e["request_id"] for e in entries] == [f"req-{i}" for i in range(10)]
    assert entries[2]["prev"] == {"lab-a": 0, "oversight": None}
    with db.session() as s:
        assert store.root(s, 10) == reference.mth(leaves)


def test_an_integration_that_fails_leaves_the_entries_pending(db: Database) -> None:
    _sequence(db, range(4))
    with pytest.raises(RuntimeError), db.session() as s:
        assert store.integrate(s, 2) == 2
        raise RuntimeError("the integrating transaction failed before its commit")
    assert (_tree_size(db), _waiting(db)) == (0, 4)
    with db.session() as s:
        assert [e.index for e in store.entries(s)] == [0, 1, 2, 3]


def test_a_rolled_back_effect_never_reaches_the_log(db: Database) -> None:
    _sequence(db, range(2))
    with pytest.raises(RuntimeError), db.session() as s:
        add_entry(s, 99)
        assert store.size(s) == 3  # its own transaction sees it, integrated
        raise RuntimeError("the effect failed")
    assert (_tree_size(db), _waiting(db)) == (0, 2)  # the integration rolled back with it
    with db.session() as s:
        assert [e.request_id for e in store.entries(s)] == ["req-0", "req-1"]
        add_entry(s, 2)
    assert [json.loads(x)["index"] for x in _leaves(db)] == [0, 1, 2]


def test_committed_entries_outlive_their_process_and_are_integrated_next(
    logs: Logs, signer: note.Signer
) -> None:
    """Entries sequenced by one engine that then goes away are integrated by the next one."""
    with logs(shared=True) as url:
        first = Database(url)
        _sequence(first, range(5))
        with first.session() as s:
            store.integrate(s, 2)
        _sequence(first, range(5, 8))
        first.dispose()  # as a crash leaves it: committed, pending, no integrator
        with opened(url) as db:
            assert (_tree_size(db), _waiting(db)) == (2, 6)
            assert integrator.integrate_round(db, 4) == 6
            leaves = _verifies(db, signer)
    assert [json.loads(x)["request_id"] for x in leaves] == [f"req-{i}" for i in range(8)]


def test_an_entry_too_large_is_refused_when_appended(db: Database) -> None:
    """The size is checked with the largest index and links, so integration cannot refuse it."""
    base = leafmod.MAX_ENTRY_SIZE - len(_placeholder_leaf(""))
    with db.session() as s:
        add_entry(s, 0, details={"pad": "a" * base})  # exactly the limit with placeholders
        with pytest.raises(store.EntryTooLarge) as caught:
            add_entry(s, 1, details={"pad": "a" * (base + 1)})
        assert caught.value.status == 413
    assert _waiting(db) == 1
    with db.session() as s:
        [entry] = store.entries(s)
        assert len(entry.leaf) < leafmod.MAX_ENTRY_SIZE  # the real index and links are shorter


def _placeholder_leaf(pad: str) -> bytes:
    fields = {
        "time": T0,
        "actor": "prn_0",
        "org": "lab-a",
        "role": "lab",
        "action": "upload.create",
        "artifact": "art_0",
        "grant": None,
        "subject_org": "lab-a",
        "outcome": "ok",
        "request_id": "req-0",
        "ip": "127.0.0.1",
        "details": {"pad": pad},
    }
    return leafmod.encode_leaf(
        index=pending.PLACEHOLDER_INDEX, **fields, prev={"lab-a": pending.PLACEHOLDER_INDEX}
    )


def test_concurrent_appenders_and_integrators_keep_one_sequence(
    logs: Logs, signer: note.Signer
) -> None:
    """Appenders and integrators on engines of their own race; the log is one gapless sequence."""
    with logs(shared=True) as url:
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def appender(w: int) -> None:
            db = Database(url)
            try:
                start.wait()
                for i in range(20):
                    with db.session() as s:
                        add_entry(s, 100 * w + i)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                db.dispose()

        def integrating() -> None:
            db = Database(url)
            try:
                start.wait()
                for _ in range(15):
                    with db.session() as s:
                        store.integrate(s, 3)  # no leader lock: the head row alone must do
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                db.dispose()

        threads = [threading.Thread(target=appender, args=(w,)) for w in range(4)]
        threads += [threading.Thread(target=integrating) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with opened(url) as db:
            leaves = _verifies(db, signer)
            assert _waiting(db) == 0
    entries = [json.loads(x) for x in leaves]
    assert [e["index"] for e in entries] == list(range(80))
    assert sorted(e["request_id"] for e in entries) == sorted(
        f"req-{100 * w + i}" for w in range(4) for i in range(20)
    )
    for w in range(4):  # each appender's entries keep the order they committed in
        mine = [n for e in entries if (n := int(e["request_id"][4:])) // 100 == w]
        assert mine == sorted(mine)


def test_a_round_skips_while_another_leads_and_otherwise_drains(db: Database) -> None:
    _sequence(db, range(7))
    with db.leader(integrator.LEADER) as leading:
        assert leading
        assert integrator.integrate_round(db, 2) == 0
    assert _waiting(db) == 7
    assert integrator.integrate_round(db, 2) == 7
    assert (_tree_size(db), _waiting(db)) == (7, 0)


def test_the_heads_entry_is_written_after_everything_pending(db: Database) -> None:
    _sequence(db, range(3))
    with db.session() as s:
        add_entry(s, 0, action=leafmod.HEADS_ACTION, actor="cli", org="operator")
    assert _tree_size(db) == 7
    run = [json.loads(x) for x in _leaves(db)[3:]]
    assert {e["action"] for e in run} == {leafmod.HEADS_ACTION}
    # One per org with entries, in org name order, each pinning that org alone.
    assert [(e["subject_org"], e["prev"]) for e in run] == [
        ("agency-a", {"agency-a": 1}),
        ("lab-a", {"lab-a": 2}),
        ("lab-b", {"lab-b": 1}),
        ("oversight", {"oversight": 2}),
    ]
    with db.session() as s:
        assert store.root(s, 7) == merkle.root_from_nodes(
            store.tile_hashes(s, merkle.root_nodes(7))
        )
