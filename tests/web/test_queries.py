"""The log browser's query: exactly the naive filter's answer, paged, with times out of order."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from gateway.audit import store
from gateway.caller import Actor
from gateway.paging import PageRequest
from gateway.runtime import Runtime
from gateway.web import queries
from gateway.web.queries import LogFilters

T0 = datetime(2026, 11, 1)
AUDITOR = Actor(id="prn_a", name="otto", org="oversight", role="auditor")
LAB = Actor(id="prn_l", name="alice", org="lab-1", role="lab")


@pytest.fixture
def log(rt: Runtime) -> list[dict[str, object]]:
    """400 entries, one every 10 minutes, each appended up to a minute out of time order."""
    rnd = random.Random(5)
    made = []
    with rt.db.session() as session:
        for i in range(400):
            when = T0 + timedelta(minutes=10 * i, seconds=rnd.randint(-60, 60))
            values = {
                "org": f"agency-{i % 3}",
                "action": ("access.request", "content.download", "auth.denied")[
                    i % 3 - (i % 7 == 0)
                ],
                "artifact": f"art_{i % 4}",
                "outcome": "denied" if i % 5 == 0 else "ok",
                "subject_org": f"lab-{i % 2}",
            }
            store.append(session, time=when, actor=f"prn_{i % 9}", role="evaluator", **values)
            made.append({"index": i, "time": when, **values})
    return made


def everything(rt: Runtime, actor: Actor, f: LogFilters) -> list[int]:
    found, cursor = [], None
    while True:
        page = queries.entries(rt, actor, f, PageRequest(7, cursor))
        found += [e.index for e in page.items]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def naive(log: list[dict[str, object]], f: LogFilters, org_of_lab: str | None = None) -> list[int]:
    def keep(e: dict[str, object]) -> bool:
        when = e["time"]
        assert isinstance(when, datetime)
        return (
            (f.org is None or e["org"] == f.org)
            and (f.artifact is None or e["artifact"] == f.artifact)
            and (f.action is None or e["action"] == f.action)
            and (f.outcome is None or e["outcome"] == f.outcome)
            and (f.since is None or when >= f.since)
            and (f.until is None or when <= f.until)
            and (org_of_lab is None or e["subject_org"] == org_of_lab)
        )

    return [int(str(e["index"])) for e in log if keep(e)]


@pytest.mark.parametrize(
    "f",
    [
        LogFilters(),
        LogFilters(org="agency-1"),
        LogFilters(outcome="denied", artifact="art_2"),
        LogFilters(action="auth.denied"),
        LogFilters(since=T0 + timedelta(hours=20)),
        LogFilters(until=T0 + timedelta(hours=20)),
        LogFilters(since=T0 + timedelta(hours=10), until=T0 + timedelta(hours=10, minutes=30)),
        LogFilters(since=T0 + timedelta(hours=30), until=T0 + timedelta(hours=40), org="agency-2"),
        LogFilters(since=T0 - timedelta(days=3), until=T0 + timedelta(days=30)),
        LogFilters(since=T0 + timedelta(days=30)),
        LogFilters(until=T0 - timedelta(days=1)),
        LogFilters(below=50, org="agency-0"),
    ],
)
def test_the_query_answers_what_the_naive_filter_does(
    rt: Runtime, log: list[dict[str, object]], f: LogFilters
) -> None:
    expected = [i for i in naive(log, f) if f.below is None or i < f.below]
    assert everything(rt, AUDITOR, f) == expected


def test_a_lab_sees_only_the_entries_about_its_artifacts(
    rt: Runtime, log: list[dict[str, object]]
) -> None:
    f = LogFilters(since=T0 + timedelta(hours=5), until=T0 + timedelta(hours=50))
    assert everything(rt, LAB, f) == naive(log, f, org_of_lab="lab-1")


def test_times_out_of_order_by_less_than_the_skew_are_found(rt: Runtime) -> None:
    """An entry timed before its predecessor, at a window's edge, is still in the window."""
    with rt.db.session() as session:
        for minutes in (0, 10, 20, 21, 19.5, 30, 40):  # entry 4 appended after 3, timed before
            store.append(
                session,
                time=T0 + timedelta(minutes=minutes),
                actor="prn_x",
                org="agency-0",
                role="evaluator",
                action="access.request",
            )
    window = LogFilters(since=T0 + timedelta(minutes=19), until=T0 + timedelta(minutes=20))
    assert everything(rt, AUDITOR, window) == [2, 4]
