"""Reading the audit log: the entries a principal may read, the signed checkpoint, proofs.

An auditor reads the whole log, a lab the entries about its artifacts (``subject_org``),
denials of other principals on them included; :func:`gateway.authz.scope` says so in SQL.
Entries are listed in index order, from ``start``, and page by index like every other
list. A proof or size outside the log is the store's :class:`~gateway.audit.store.ProofRangeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from gateway import authz
from gateway.audit import store
from gateway.audit.store import Entry
from gateway.caller import Actor
from gateway.errors import BadRequest
from gateway.paging import MAX_INT, Key, Keyset, Page, PageRequest, page
from gateway.runtime import Runtime

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


@dataclass(frozen=True)
class Proof:
    """An RFC 9162 proof: of entry ``first`` in the tree of ``size`` (inclusion), or between sizes."""

    first: int
    size: int
    hashes: list[bytes]


def visible(rt: Runtime, actor: Actor, filters: EntryFilters, request: PageRequest) -> Page[Entry]:
    """One page of the entries ``actor`` may read, in index order."""
    query = select(Entry).where(authz.scope(actor, Entry), Entry.index >= filters.start)
    for column, value in (
        (Entry.artifact, filters.artifact),
        (Entry.actor, filters.actor),
        (Entry.action, filters.action),
    ):
        if value is not None:
            query = query.where(column == value)
    with rt.db.session() as session:
        return page(session, query, ORDER, request)


def checkpoint(rt: Runtime) -> str:
    """The signed note of the log's current checkpoint."""
    with rt.db.session() as session:
        return store.sign_checkpoint(session, rt.audit_signer, rt.config.audit.origin)


def inclusion(rt: Runtime, index: int, size: int | None) -> Proof:
    """The inclusion proof of entry ``index`` in the tree of ``size`` entries (None: all of them)."""
    with rt.db.session() as session:
        tree = store.size(session) if size is None else size
        return Proof(index, tree, store.inclusion_proof(session, index, tree))


def consistency(rt: Runtime, old: int, new: int | None) -> Proof:
    """The consistency proof from the tree of ``old`` entries to that of ``new`` (None: all)."""
    with rt.db.session() as session:
        tree = store.size(session) if new is None else new
        return Proof(old, tree, store.consistency_proof(session, old, tree))
