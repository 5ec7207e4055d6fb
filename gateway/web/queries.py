"""The log browser's query: the entries a principal may read, by the filters a person uses.

:func:`gateway.services.auditlog.visible` filters by artifact, actor and action; the log
browser also filters by organisation, outcome and time. This is that function with those
filters added, under the same scope (:func:`gateway.authz.scope`) and in the same keyset
order, so it pages the same way; once the service takes them, this becomes a call to it.

Every filter is an equality on a column indexed together with the index, so a page is one
range scan. A time bound is also turned into an index bound (the first index at or after
``since``, the last at or before ``until``, each one indexed lookup), which keeps the scan
to the window even when the time filter is the only one. Entries are appended in time
order give or take the few milliseconds between taking the time and taking the log's
lock, so the time predicate stays too: the index bounds only narrow, never change, the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select

from gateway import authz
from gateway.audit.store import Entry
from gateway.caller import Actor
from gateway.paging import Page, PageRequest, page
from gateway.runtime import Runtime
from gateway.services.auditlog import ORDER


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


def entries(rt: Runtime, actor: Actor, f: LogFilters, request: PageRequest) -> Page[Entry]:
    """One page of the entries ``actor`` may read that match ``f``, in index order."""
    query = select(Entry).where(*_conditions(actor, f))
    with rt.db.session() as session:
        if f.since is not None:
            first = session.scalar(select(func.min(Entry.index)).where(Entry.time >= f.since))
            if first is None:
                return Page([], None)
            query = query.where(Entry.index >= first, Entry.time >= f.since)
        if f.until is not None:
            last = session.scalar(select(func.max(Entry.index)).where(Entry.time <= f.until))
            if last is None:
                return Page([], None)
            query = query.where(Entry.index <= last, Entry.time <= f.until)
        return page(session, query, ORDER, request)


def entry(rt: Runtime, index: int) -> Entry | None:
    """The entry at ``index``, or None (whether the caller may read it is the view's to ask)."""
    with rt.db.session() as session:
        return session.get(Entry, index)
