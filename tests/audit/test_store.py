"""The log store: appends, roots, proofs and filters, checked against the naive reference tree.

Every test runs on SQLite and on PostgreSQL (``logs``): each log is empty and new, in
memory or a file for SQLite, a database of its own on the session's cluster for PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from gateway.audit import merkle, note, store
from gateway.audit.merkle import ProofError
from gateway.db import Database
from tests.audit import reference
from tests.audit.conftest import ORIGIN, T0, Logs, add_entry, fill, opened


@pytest.fixture
def db(logs: Logs) -> Iterator[Database]:
    """An empty log of this test's own, on SQLite or PostgreSQL."""
    with logs() as url, opened(url) as database:
        yield database


def _leaves(db: Database) -> list[bytes]:
    with db.session() as s:
        return [leaf for _, leaf in store.iter_leaves(s)]


def test_empty_log(db: Database) -> None:
    with db.session() as s:
        assert store.size(s) == 0
        assert store.root(s, 0) == merkle.empty_root()
        assert store.entries(s) == []
        assert store.checkpoint(s, ORIGIN).size == 0


def test_leaf_is_the_canonical_entry(db: Database) -> None:
    with db.session() as s:
        store.append(
            s,
            time=datetime(2026, 11, 26, 13, 0, 0, 250000, tzinfo=UTC),
            actor="prn_1",
            org="agency-a",
            role="evaluator",
            action="key.release",
            artifact="art_1",
            grant="grt_1",
            subject_org="lab-a",
            request_id="req-1",
            ip="10.0.0.1",
            details={"b": "é", "a": [1, 2]},
        )
        [e] = store.entries(s)  # integrated by the reader, in the same transaction
    assert e.index == 0
    assert (
        e.leaf
        == (
            '{"action":"key.release","actor":"prn_1","artifact":"art_1","details":{"a":[1,2],"b":"é"},'
            '"grant":"grt_1","index":0,"ip":"10.0.0.1","org":"agency-a","outcome":"ok",'
            '"prev":{"agency-a":null,"lab-a":null},"request_id":"req-1","role":"evaluator",'
            '"subject_org":"lab-a","time":"2026-11-26T13:00:00.250000Z","v":2}'
        ).encode()
    )
    with db.session() as s:
        assert store.leaf(s, 0) == e.leaf
        got = store.entries(s)[0]
        assert got.entry() == json.loads(e.leaf)
        assert got.time == datetime(2026, 11, 26, 13, 0, 0, 250000)
        assert store.root(s, 1) == merkle.leaf_hash(e.leaf)


def test_append_does_not_commit_and_rolls_back_with_the_caller(db: Database) -> None:
    fill(db, 3)
    with pytest.raises(RuntimeError), db.session() as s:
        add_entry(s, 3)
        raise RuntimeError("the effect failed")
    leaves = _leaves(db)
    with db.session() as s:
        assert store.size(s) == 3
        assert store.root(s, 3) == reference.mth(leaves)
        add_entry(s, 3)
        assert [e.index for e in store.entries(s, 3)] == [3]


def test_roots_and_proofs_match_the_reference_for_every_size(db: Database) -> None:
    n = 33
    fill(db, n, per_tx=7)
    leaves = _leaves(db)
    assert [json.loads(x)["index"] for x in leaves] == list(range(n))
    with db.session() as s:
        for size in range(n + 1):
            assert store.root(s, size) == reference.mth(leaves[:size])
            for index in range(size):
                assert store.inclusion_proof(s, index, size) == reference.path(index, leaves[:size])
            for old in range(size + 1):
                assert store.consistency_proof(s, old, size) == reference.proof(old, leaves[:size])


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(n=st.integers(2, 80), data=st.data())
def test_every_proof_from_the_store_verifies(logs: Logs, n: int, data: st.DataObject) -> None:
    with logs() as url, opened(url) as db:
        fill(db, n, per_tx=data.draw(st.integers(1, 64)))
        leaves = _leaves(db)
        with db.session() as s:
            size = data.draw(st.integers(1, n))
            old = data.draw(st.integers(1, size))
            index = data.draw(st.integers(0, size - 1))
            root, old_root = store.root(s, size), store.root(s, old)
            for i in range(size):  # every inclusion and consistency proof at this size
                merkle.verify_inclusion(
                    i, size, merkle.leaf_hash(leaves[i]), store.inclusion_proof(s, i, size), root
                )
            for k in range(1, size + 1):
                merkle.verify_consistency(
                    k, size, store.consistency_proof(s, k, size), store.root(s, k), root
                )
            proof = store.inclusion_proof(s, index, size)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index]), proof, root)
            cons = store.consistency_proof(s, old, size)
            merkle.verify_consistency(old, size, cons, old_root, root)
            # The wrong leaf, the wrong position, the wrong tree: refused.
            wrong = data.draw(st.integers(0, n - 1).filter(lambda i: i != index))
            with pytest.raises(ProofError):
                merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[wrong]), proof, root)
            if size > 1:
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(
                        wrong % size if wrong % size != index else (index + 1) % size,
                        size,
                        merkle.leaf_hash(leaves[index]),
                        proof,
                        root,
                    )
            if size < n:
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(
                        index,
                        size + 1,
                        merkle.leaf_hash(leaves[index]),
                        proof,
                        store.root(s, size + 1),
                    )
                with pytest.raises(ProofError):
                    merkle.verify_consistency(
                        old, size + 1, cons, old_root, store.root(s, size + 1)
                    )
            if old > 1 and old < size:
                with pytest.raises(ProofError):
                    merkle.verify_consistency(old - 1, size, cons, store.root(s, old - 1), root)


def test_savepoints_and_many_appends_per_transaction_keep_the_sequence(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0)
        with pytest.raises(RuntimeError), s.begin_nested():
            add_entry(s, 1)
            raise RuntimeError("rolled back to the savepoint")
        add_entry(s, 1)
        with s.begin_nested():
            add_entry(s, 2)
            add_entry(s, 3)
        add_entry(s, 4)
    leaves = _leaves(db)
    assert [json.loads(x)["index"] for x in leaves] == [0, 1, 2, 3, 4]
    assert [json.loads(x)["request_id"] for x in leaves] == [f"req-{i}" for i in range(5)]
    with db.session() as s:
        assert store.root(s, 5) == reference.mth(leaves)
        for size in range(1, 6):
            assert store.root(s, size) == reference.mth(leaves[:size])


def test_out_of_range_requests_are_refused(db: Database) -> None:
    fill(db, 5)
    with db.session() as s:
        for call in (
            lambda: store.root(s, 6),
            lambda: store.inclusion_proof(s, 5, 5),
            lambda: store.inclusion_proof(s, 0, 6),
            lambda: store.consistency_proof(s, 3, 6),
            lambda: store.consistency_proof(s, 4, 3),
            lambda: store.root(s, -1),
        ):
            with pytest.raises(store.ProofRangeError):
                call()
        with pytest.raises(store.EntryNotFound):
            store.leaf(s, 5)


def test_filters(db: Database) -> None:
    fill(db, 24)
    with db.session() as s:
        assert [e.index for e in store.entries(s, 0, 100, action="key.release")] == list(
            range(2, 24, 4)
        )
        assert [e.index for e in store.entries(s, 5, 3, subject_org="lab-b")] == [5, 7, 9]
        assert [e.index for e in store.entries(s, 0, 100, artifact="art_2", org="oversight")] == [
            2,
            17,
        ]
        assert [e.index for e in store.entries(s, 0, 100, request_id="req-7")] == [7]
        assert [
            e.index
            for e in store.entries(
                s, 0, 100, since=T0 + timedelta(seconds=20), until=T0 + timedelta(seconds=22)
            )
        ] == [20, 21, 22]
        assert store.entries(s, 0, 100, outcome="denied") == []
        add_entry(s, 24, outcome="denied", grant="grt_9")
        assert [e.index for e in store.entries(s, 0, 100, outcome="denied", grant="grt_9")] == [24]
        assert [e.index for e in store.entries(s, 0, 100, role="auditor", actor="prn_2")][:2] == [
            2,
            5,
        ]
        with pytest.raises(TypeError):
            store.entries(s, 0, 10, colour="red")


def test_signed_checkpoint_commits_to_the_head(db: Database, signer: note.Signer) -> None:
    fill(db, 11)
    with db.session() as s:
        text = store.sign_checkpoint(s, signer, ORIGIN)
    cp = note.open_checkpoint(text, [signer.verifier_key], origin=ORIGIN)
    assert (cp.size, cp.root) == (11, reference.mth(_leaves(db)))


def test_a_missing_subtree_is_an_integrity_error(db: Database) -> None:
    fill(db, 6)
    with db.session() as s:
        store.integrate(s)
        s.execute(
            store.Subtree.__table__.delete().where(
                store.Subtree.level == 0, store.Subtree.index == 2
            )
        )
    with db.session() as s, pytest.raises(store.LogIntegrityError):
        store.inclusion_proof(s, 3, 6)


def test_a_damaged_head_border_stops_integration(db: Database) -> None:
    fill(db, 3)
    with db.session() as s:
        store.integrate(s)
        s.execute(update(store.Head).values(border=b""))
    with db.session() as s, pytest.raises(store.LogIntegrityError):
        add_entry(s, 3)
        store.integrate(s)


def test_concurrent_appenders_keep_one_sequence(logs: Logs) -> None:
    """Engines of their own, as other processes and instances have, race from an empty log."""
    with logs(shared=True) as url:
        _append_concurrently(url, workers=4, each=15)
        with opened(url) as db:
            leaves = _leaves(db)
            assert [json.loads(x)["index"] for x in leaves] == list(range(60))
            assert sorted(json.loads(x)["request_id"] for x in leaves) == sorted(
                f"req-{100 * w + i}" for w in range(4) for i in range(15)
            )
            with db.session() as s:
                assert store.root(s, 60) == reference.mth(leaves)
                assert s.scalar(select(store.Head.size)) == 60


def _append_concurrently(url: str, workers: int, each: int) -> None:
    """``workers`` threads, each on an engine of its own, append ``each`` entries one per transaction."""
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def worker(w: int) -> None:
        db = Database(url)
        try:
            start.wait()
            for i in range(each):
                with db.session() as s:
                    add_entry(s, 100 * w + i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
