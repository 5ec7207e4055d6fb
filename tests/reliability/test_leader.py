"""One leader per job across instances: ``Database.leader`` and the sweeper's use of it.

Every test runs on SQLite and on PostgreSQL. "Another instance" is another ``Database``
(its own engine and connections) on the same database, or another process; a leader
that dies (SIGKILL, no clean-up) must not keep the job from everyone else.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from gateway import sweeper
from gateway.audit import store as audit_store
from gateway.clock import FrozenClock
from gateway.db import Database
from gateway.runtime import Runtime
from tests.conftest import Principals


@pytest.fixture
def other(db_url: str, rt: Runtime) -> Iterator[Database]:
    """A second instance's handle on the same (initialised) database."""
    db = Database(db_url)
    yield db
    db.dispose()


def test_one_leader_at_a_time_per_name(rt: Runtime, other: Database) -> None:
    with rt.db.leader("sweep: job") as first:
        assert first is True
        with other.leader("sweep: job") as second:
            assert second is False
        with other.leader("sweep: another job") as unrelated:
            assert unrelated is True
        with rt.db.leader("sweep: job") as same_process_again:
            assert same_process_again is False  # threads and workers of one instance too
    with other.leader("sweep: job") as after:
        assert after is True


def test_threads_racing_for_a_job_get_one_leader(rt: Runtime, other: Database) -> None:
    barrier = threading.Barrier(8)
    won: list[bool] = []
    lock = threading.Lock()

    def contend(db: Database) -> None:
        barrier.wait()
        with db.leader("sweep: race") as held:
            with lock:
                won.append(held)
            time.sleep(0.3)  # everyone else tries while this one holds it

    threads = [threading.Thread(target=contend, args=(db,)) for db in [rt.db, other] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won) == [False] * 7 + [True]


_HOLDER = """
import sys, time
from gateway.db import Database
with Database(sys.argv[1]).leader("sweep: held elsewhere") as held:
    print("held" if held else "refused", flush=True)
    time.sleep(120)
"""


def test_a_leader_that_dies_releases_the_job(db_url: str, other: Database) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, db_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with other.leader("sweep: held elsewhere") as held:
            assert held is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while True:
            with other.leader("sweep: held elsewhere") as held:
                if held:
                    break
            assert time.monotonic() < deadline, "the dead leader's lock was never released"
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", ["Sweep", "", "x" * 129, "a/b", "a;b"])
def test_a_leader_name_is_plain(rt: Runtime, name: str) -> None:
    with pytest.raises(ValueError, match="leader name"), rt.db.leader(name):
        pass


def _refuse_thrice(client: FlaskClient, principals: Principals) -> None:
    for _ in range(3):
        answer = client.post(
            "/v1/artifacts/art_nope/access-requests", headers=principals.auth("eval")
        )
        assert answer.status_code == 404


def _denial_entries(rt: Runtime) -> list[dict[str, object]]:
    with rt.db.session() as session:
        return [e.entry() for e in audit_store.entries(session, action="auth.denied", limit=1000)]


def test_a_sweep_step_another_sweeper_leads_is_skipped_then_done_once(
    client: FlaskClient, principals: Principals, clock: FrozenClock, rt: Runtime, other: Database
) -> None:
    _refuse_thrice(client, principals)
    clock.advance(seconds=61)  # the interval of the two repeats has closed
    with other.leader("sweep: close denial intervals") as held:
        assert held
        report = sweeper.sweep_once(rt)
    assert report["denial_intervals_closed"] == 0
    assert [e["details"].get("count") for e in _denial_entries(rt)] == [None]  # type: ignore[union-attr]
    assert sweeper.sweep_once(rt)["denial_intervals_closed"] == 1
    assert sweeper.sweep_once(rt)["denial_intervals_closed"] == 0
    counts = [e["details"].get("count") for e in _denial_entries(rt)]  # type: ignore[union-attr]
    assert counts == [None, 2]


def test_the_anchor_is_published_by_the_leader_only(
    client: FlaskClient, principals: Principals, rt: Runtime, other: Database
) -> None:
    _refuse_thrice(client, principals)  # the log is not empty, so an anchor is due (by time)
    with other.leader("sweep: publish an audit anchor"):
        assert sweeper.sweep_once(rt)["anchors_published"] == 0
    assert sweeper.sweep_once(rt)["anchors_published"] == 1
    assert sweeper.sweep_once(rt)["anchors_published"] == 0
