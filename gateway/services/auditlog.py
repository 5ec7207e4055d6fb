"""Reading the audit log: the entries a principal may read, the signed checkpoint, proofs.

An auditor reads the whole log; a lab or an agency the entries that concern its org (the
actor's org or the org that owns what the entry is about: a lab's artifacts and the denials
of other principals on them, an agency's evaluators), :func:`gateway.authz.scope` says so in
SQL. Entries are listed in index order, from ``start``, and page by index like every other
list. A listing may carry each entry's inclusion proof in the tree of a given size, so that
a lab proves what it was shown in one pass (``gateway audit mine``). A proof or size outside
the log is the store's :class:`~gateway.audit.store.ProofRangeError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from gateway import authz, events
from gateway.audit import store
from gateway.audit.leaf import HEADS_ACTION
from gateway.audit.note import Checkpoint
from gateway.audit.store import Entry
from gateway.caller import Actor
from gateway.errors import BadRequest
from gateway.paging import MAX_INT, Key, Keyset, Page, PageRequest, page
from gateway.runtime import Runtime
from gateway.services import cosigning

ORDER = Keyset(Key(Entry.index, int))


@dataclass(frozen=True)
class EntryFilters:
    """What a list of entries is narrowed to (None: no narrowing), and the first index.

    ``concerning``: entries that concern this org; ``with_proofs``: each with its inclusion
    proof in the tree of ``size`` entries (None: the whole log), only entries below it listed.
    """

    start: int = 0
    artifact: str | None = None
    actor: str | None = None
    action: str | None = None
    concerning: str | None = None
    with_proofs: bool = False
    size: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start <= MAX_INT:
            raise BadRequest(f"start must be between 0 and {MAX_INT}")


@dataclass(frozen=True)
class Proof:
    """An RFC 9162 proof: of entry ``first`` in the tree of ``size`` (inclusion), or between sizes."""

    first: int
    size: int
    hashes: list[bytes]


@dataclass(frozen=True)
class Listing:
    """A page of entries; with proofs, the tree size they are for and each entry's proof."""

    page: Page[Entry]
    size: int | None = None
    proofs: dict[int, list[bytes]] = field(default_factory=dict)


def visible(rt: Runtime, actor: Actor, filters: EntryFilters, request: PageRequest) -> Listing:
    """One page of the entries ``actor`` may read, in index order (with proofs if asked)."""
    query = select(Entry).where(authz.scope(actor, Entry), Entry.index >= filters.start)
    for column, value in (
        (Entry.artifact, filters.artifact),
        (Entry.actor, filters.actor),
        (Entry.action, filters.action),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.concerning is not None:
        query = query.where(store.concerning(filters.concerning))
    with rt.db.session() as session:
        store.settle(session)  # every entry committed before this read is in the page
        if not filters.with_proofs:
            return Listing(page(session, query, ORDER, request))
        tree = store.size(session) if filters.size is None else filters.size
        store.root(session, tree)  # a size outside the log is refused before anything is read
        found = page(session, query.where(Entry.index < tree), ORDER, request)
        proofs = {e.index: store.inclusion_proof(session, e.index, tree) for e in found.items}
        return Listing(found, tree, proofs)


def record_heads(rt: Runtime) -> Checkpoint:
    """Append the heads entries (one per org, each its latest index); the checkpoint that ends with them.

    Each org's heads entry concerns that org alone, so no org's view names another. The
    checkpoint is read in the entries' own transaction, which holds the log's lock, so
    nothing can come between the two.
    """
    with events.fail_closed(rt) as session:
        events.record(rt, session, HEADS_ACTION, None)
        return store.checkpoint(session, rt.config.audit.origin)


def checkpoint(rt: Runtime) -> str:
    """The checkpoint the gateway serves (:func:`gateway.services.cosigning.served`).

    With witnesses, the latest one their quorum cosigned (NotPublished before the first);
    without, the newest signed one, never over a history the last signed one does not extend.
    """
    return cosigning.served(rt)


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
