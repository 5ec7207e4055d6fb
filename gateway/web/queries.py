"""The log browser's query: the entries a principal may read, by the filters a person uses.

:func:`gateway.services.auditlog.visible` filters by artifact, actor and action; the log
browser also filters by organisation, outcome and time. This is that function with those
filters added, under the same scope (:func:`gateway.authz.scope`) and in the same keyset
order, so it pages the same way; once the service takes them, this becomes a call to it.

Every filter is an equality on a column indexed together with the index, so a page is one
range scan. A time bound also becomes an index bound, which keeps the scan to the window
even when the time filter is the only one. Entries are appended in time order give or
take the time an append waits for the log's lock after taking its time (on SQLite at
most the 30 s busy timeout), far less than :data:`SKEW`: an entry appended before another
is never more than ``SKEW`` later. So every entry before the latest one timed earlier
than ``since - SKEW`` is earlier than ``since``, and every entry after the earliest one
timed later than ``until + SKEW`` is later than ``until``; each of those two entries is
one step into the time index (``ORDER BY time LIMIT 1``). The time predicates stay as
well: the index bounds narrow the scan, never the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from gateway import authz
from gateway.audit import store
from gateway.audit.store import Entry
from gateway.caller import Actor
from gateway.paging import Page, PageRequest, page
from gateway.runtime import Runtime
from gateway.services.auditlog import ORDER

SKEW = timedelta(minutes=5)
"""How far out of time order an entry may be appended (far more than a lock wait lasts)."""


@dataclass(frozen=True)
class LogFilters:
    """What the log browser is narrowed to (None: no narrowing); times are naive UTC."""

    org: str | None = None
    artifact: str | None = None
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    below: int | None = None  # only entries before this index (a report's checkpoint size)


def _conditions(actor: Actor, f: LogFilters) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [authz.scope(actor, Entry)]
    for column, value in (
        (Entry.org, f.org),
        (Entry.artifact, f.artifact),
        (Entry.actor, f.actor),
        (Entry.action, f.action),
        (Entry.outcome, f.outcome),
    ):
        if value is not None:
            found.append(column == value)
    if f.below is not None:
        found.append(Entry.index < f.below)
    return found


def _in_window(session: Session, query: Select[Entry], f: LogFilters) -> Select[Entry]:
    """``query`` narrowed to ``f``'s times, with the index bounds the design note describes."""
    if f.since is not None:
        query = query.where(Entry.time >= f.since)
        before = session.scalar(
            select(Entry.index)
            .where(Entry.time < f.since - SKEW)
            .order_by(Entry.time.desc(), Entry.index.desc())
            .limit(1)
        )
        if before is not None:
            query = query.where(Entry.index > before)
    if f.until is not None:
        query = query.where(Entry.time <= f.until)
        beyond = session.scalar(
            select(Entry.index)
            .where(Entry.time > f.until + SKEW)
            .order_by(Entry.time, Entry.index)
            .limit(1)
        )
        if beyond is not None:
            query = query.where(Entry.index < beyond)
    return query


def entries(rt: Runtime, actor: Actor, f: LogFilters, request: PageRequest) -> Page[Entry]:
    """One page of the entries ``actor`` may read that match ``f``, in index order."""
    with rt.db.session() as session:
        store.settle(session)  # every entry committed before this read is in the page
        query = _in_window(session, select(Entry).where(*_conditions(actor, f)), f)
        return page(session, query, ORDER, request)


def entry(rt: Runtime, index: int) -> Entry | None:
    """The entry at ``index``, or None (whether the caller may read it is the view's to ask)."""
    with rt.db.session() as session:
        store.settle(session)
        return session.get(Entry, index)
