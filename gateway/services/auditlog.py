"""The audit entries a principal may read: the whole log for an auditor, its own for a lab.

A lab's own entries are those about its artifacts (``subject_org``), denials of other
principals on them included; :func:`gateway.authz.scope` says so in SQL. Entries are
listed in index order, from ``start``, and page by index like every other list.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import authz
from gateway.audit.store import Entry
from gateway.caller import Actor
from gateway.errors import BadRequest
from gateway.paging import MAX_INT, Key, Keyset, Page, PageRequest, page

ORDER = Keyset(Key(Entry.index, int))


@dataclass(frozen=True)
class EntryFilters:
    """What a list of entries is narrowed to (None: no narrowing), and the first index."""

    start: int = 0
    artifact: str | None = None
    actor: str | None = None
    action: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start <= MAX_INT:
            raise BadRequest(f"start must be between 0 and {MAX_INT}")


def visible(
    session: Session, actor: Actor, filters: EntryFilters, request: PageRequest
) -> Page[Entry]:
    """One page of the entries ``actor`` may read, in index order."""
    query = select(Entry).where(authz.scope(actor, Entry), Entry.index >= filters.start)
    for column, value in (
        (Entry.artifact, filters.artifact),
        (Entry.actor, filters.actor),
        (Entry.action, filters.action),
    ):
        if value is not None:
            query = query.where(column == value)
    return page(session, query, ORDER, request)
