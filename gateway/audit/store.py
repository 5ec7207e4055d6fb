"""The audit log in the metadata database: entries, stored subtree hashes, one head row.

Design note (RFC 9162 §2.1 for the tree, c2sp.org/tlog-checkpoint for checkpoints):

- ``audit_pending`` (:mod:`gateway.audit.pending`) holds entries :func:`append` sequenced in
  their effect's transaction, before :func:`integrate` gives them an index.
- ``audit_entries`` holds each entry's exact leaf bytes (:mod:`gateway.audit.leaf`) under its
  index, with the fields a reader filters on beside it: :func:`gateway.audit.leaf.columns` of
  the leaf, written by :func:`integrate` and nowhere else, so a verifier re-derives every one.
- ``audit_entry_orgs`` holds, for each entry, the orgs it concerns
  (:func:`gateway.audit.leaf.concerns`): what a lab's or an agency's view is scoped by.
  ``audit_org_heads`` holds each org's latest entry, from which integration computes the
  new entry's ``prev`` (:func:`gateway.audit.leaf.link`) and which it moves forward, under
  the head row's lock.
- ``audit_subtrees`` holds the hash of every complete subtree (level, index), written as the
  tree grows: appending leaf n creates the leaf node and one node per trailing 1 bit of n.
  Every node a root or a proof needs (:mod:`gateway.audit.merkle`) is such a subtree, so a
  root or proof costs one query for O(log n) rows and O(log n) hashes.
- ``audit_head`` is one row: size, root, and the right border of the tree (the hashes of
  ``merkle.root_nodes(size)``, concatenated), so an entry's integration reads one row and
  hashes O(log n). Integration locks it (``SELECT ... FOR UPDATE``; SQLite takes its write
  lock at BEGIN), so the sequence stays single, without gaps or forks, across processes and
  instances. On PostgreSQL this relies on READ COMMITTED (:mod:`gateway.db`): the locking
  read returns the head as the previous holder committed it, and the pending rows read after
  it are those committed by then, without the ones the previous holder deleted.

:func:`append` works inside the caller's transaction and never commits: the entry commits
together with the effect it records, or neither does. It no longer touches the head row, so
request transactions do not wait for each other on the log. Every function here that reads
the tree (:func:`size`, :func:`root`, the proofs, :func:`entries`, :func:`leaf`,
:func:`iter_leaves`, :func:`checkpoint`, :func:`export`) first integrates what is pending, in
the reader's transaction, so a reader sees every entry committed before it as if the append
had written the tree; the background integrator (:mod:`gateway.audit.integrator`) keeps the
pending table short, so readers rarely find anything to do.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Index,
    Integer,
    LargeBinary,
    Select,
    SmallInteger,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.audit import chains, merkle, pending
from gateway.audit import leaf as leafmod
from gateway.audit.chains import EntryOrg
from gateway.audit.leaf import utc_naive
from gateway.audit.note import Checkpoint, Signer
from gateway.audit.note import sign_checkpoint as sign_checkpoint_note
from gateway.db import Base
from gateway.errors import GatewayError

HEAD_ID = 1
_INDEX = BigInteger().with_variant(Integer, "sqlite")  # SQLite: the rowid itself


class LogError(GatewayError):
    """Base of the log's own errors; what each means to a client is for its caller to say."""

    slug, title = "audit-log", "Audit log error"


class LogIntegrityError(LogError):
    """The stored log lacks a node it must have: the database was damaged or edited."""

    slug, title = "audit-integrity", "Audit log integrity error"


class ProofRangeError(LogError):
    """A size, index or proof range outside the log."""


class EntryNotFound(LogError):
    """No entry at that index."""


class EntryTooLarge(LogError):
    """An entry larger than an entry bundle can hold: refused, nothing appended."""

    status, slug, title = 413, "audit-entry-too-large", "Audit entry too large"


class Entry(pending.EntryFields, Base):
    """One audit entry: ``leaf`` is exactly what was hashed; the other columns are derived from it.

    Each filter column is indexed together with the index, so a filtered page in index order
    is one range scan of that index. A v1 entry's ``subject_org`` is the one column its leaf
    does not hold (it was kept beside the leaf before v2).
    """

    __tablename__ = "audit_entries"
    __table_args__ = tuple(
        Index(f"ix_audit_entries_{column}", column, "idx")
        for column in (
            "time",
            "actor",
            "org",
            "role",
            "action",
            "artifact",
            "grant_id",
            "subject_org",
            "outcome",
            "request_id",
        )
    )
    index: Mapped[int] = mapped_column("idx", _INDEX, primary_key=True, autoincrement=False)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)

    def entry(self) -> dict[str, Any]:
        """The logged entry as a dict, read back from the leaf bytes."""
        result: dict[str, Any] = json.loads(self.leaf)
        return result

    def leaf_b64(self) -> str:
        return base64.b64encode(self.leaf).decode()

    def concerned(self) -> tuple[str, ...]:
        """The orgs this entry concerns: from its leaf (v2), else its ``subject_org`` column (v1)."""
        entry = self.entry()
        if leafmod.version(entry) > 1:
            return leafmod.concerns(entry)
        return (self.subject_org,) if self.subject_org else ()


class Subtree(Base):
    """The hash of one complete subtree, named by its node id (level, index)."""

    __tablename__ = "audit_subtrees"
    __table_args__ = {"sqlite_with_rowid": False}
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column("idx", BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class Head(Base):
    """The one row holding the log's size, root and right border (locked by appends)."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    border: Mapped[bytes] = mapped_column(LargeBinary)


# Statements built once; executed on the session's connection with column-keyed parameters.
_SELECT_HEAD = select(Head.size, Head.root, Head.border).where(Head.id == HEAD_ID)
_LOCK_HEAD = _SELECT_HEAD.with_for_update()
_UPDATE_HEAD = update(Head).where(Head.id == HEAD_ID)
_INSERT_ENTRY = insert(Entry)
_INSERT_SUBTREE = insert(Subtree)


def _read_head(session: Session, lock: bool = False) -> tuple[int, bytes, bytes] | None:
    row = session.connection().execute(_LOCK_HEAD if lock else _SELECT_HEAD).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def _lock_head(session: Session) -> tuple[int, bytes, bytes]:
    """Lock the head row, creating the empty log's head on first use."""
    head = _read_head(session, lock=True)
    if head is not None:
        return head
    values = {"id": HEAD_ID, "size": 0, "root": merkle.empty_root(), "border": b""}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        session.execute(sqlite.insert(Head).values(values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        session.execute(postgresql.insert(Head).values(values).on_conflict_do_nothing())
    else:
        session.execute(insert(Head).values(values))
    head = _read_head(session, lock=True)
    assert head is not None
    return head


def _border(size: int, blob: bytes) -> list[bytes]:
    hashes = [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]
    if len(hashes) != bin(size).count("1"):
        raise LogIntegrityError(f"audit head border does not match size {size}")
    return hashes


_HEAD_CACHE = "gateway.audit.head"


def _innermost(session: Session) -> object:
    return session.get_nested_transaction() or session.get_transaction()


class _Appending:
    """What an append needs of the locked log: the tree's border and the org heads read so far."""

    def __init__(self, rng: merkle.CompactRange) -> None:
        self.rng = rng
        self.heads = chains.Heads()


def _for_append(session: Session) -> _Appending:
    """The locked head's state; reused from the previous append of this same (sub)transaction.

    Once a transaction has appended it holds the head's lock, so nobody else can have moved
    the head or an org's head; a savepoint that is released or rolled back is another
    transaction object, so the next append reads the rows again.
    """
    cached = session.info.pop(_HEAD_CACHE, None)  # put back only when an append completes
    if cached is not None and cached[0] is _innermost(session):
        state: _Appending = cached[1]
        return state
    size, _root, blob = _lock_head(session)
    return _Appending(merkle.CompactRange(size, _border(size, blob)))


def append(
    session: Session,
    *,
    time: datetime,
    actor: str,
    org: str,
    role: str,
    action: str,
    artifact: str | None = None,
    grant: str | None = None,
    subject_org: str | None = None,
    outcome: str = "ok",
    request_id: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Sequence one entry in the caller's transaction (no commit); :func:`integrate` indexes it.

    The entry is a row of :mod:`gateway.audit.pending`, durable when the caller commits, and
    takes no lock another request waits for. An entry over the size limit is
    :class:`EntryTooLarge` here, before anything is written (:func:`pending.check_size`).

    An ``audit.heads`` entry is the exception: it becomes the run of heads entries, one per
    org with entries (:func:`_append_heads`, ``subject_org`` set to each org in turn), written
    straight into the tree, under the head row's lock, after everything pending, since the
    index each pins is only known then; it holds that lock until the caller's transaction ends.
    """
    fields: dict[str, Any] = {
        "time": utc_naive(time),
        "actor": actor,
        "org": org,
        "role": role,
        "action": action,
        "artifact": artifact,
        "grant": grant,
        "subject_org": subject_org,
        "outcome": outcome,
        "request_id": request_id,
        "ip": ip,
        "details": details or {},
    }
    if action == leafmod.HEADS_ACTION:
        _append_heads(session, fields)
        return
    try:
        pending.check_size(fields)
    except leafmod.EntryTooLarge as exc:
        raise EntryTooLarge(str(exc)) from None
    pending.add(session.connection(), fields)
    session.info.pop(_SETTLED, None)


def _append_heads(session: Session, fields: dict[str, Any]) -> None:
    """Append the run of heads entries: one per org with entries, each pinning that org alone.

    Everything pending is integrated first and the run is written under the head row's lock
    (held until the caller's transaction ends), so each entry's ``prev`` is its org's latest
    index and nothing comes between the run and the checkpoint read after it. The run is
    written :data:`INTEGRATE_BATCH` entries at a time, one statement per table per batch.
    """
    integrate(session)
    conn = session.connection()
    state = _for_append(session)
    orgs = sorted(state.heads.read_all(conn))
    for at in range(0, len(orgs), INTEGRATE_BATCH):
        batch = [{**fields, "subject_org": org} for org in orgs[at : at + INTEGRATE_BATCH]]
        try:
            _fold_batch(conn, state, batch)
        except leafmod.EntryTooLarge as exc:  # the state is dropped: the next append re-reads
            raise EntryTooLarge(str(exc)) from None
    session.info[_HEAD_CACHE] = (_innermost(session), state)


_INSERT_ENTRY_ORG = insert(EntryOrg)
_INSERT_ORG_HEAD = insert(chains.OrgHead)
_MOVE_ORG_HEAD = update(chains.OrgHead).where(chains.OrgHead.org == bindparam("head_org"))


def _fold_batch(conn: Connection, state: _Appending, batch: Sequence[dict[str, Any]]) -> None:
    """Write ``batch`` (no shared heads entry among them) at the next indices, in order.

    Each gets its leaf, subtrees and org heads, and the head row moves, in a fixed number of
    statements (one ``executemany`` per table), so a batch costs a few round trips to the
    database rather than a few per entry.
    """
    if not batch:
        return
    concerned = [leafmod.concerns({"v": leafmod.VERSION, **f}) for f in batch]
    state.heads.read(conn, sorted({o for c in concerned for o in c}))
    existing = set(state.heads.known)
    heads = dict(state.heads.known)
    entries, subtrees, orgs = [], [], []
    for fields, these in zip(batch, concerned, strict=True):
        index = state.rng.size
        data = leafmod.encode_leaf(index=index, **fields, prev=leafmod.link(heads, these))
        values = leafmod.columns(json.loads(data))
        entries.append({"idx": index, "leaf": data, "grant_id": values.pop("grant"), **values})
        created = state.rng.append(merkle.leaf_hash(data))
        subtrees += [{"level": n.level, "idx": n.index, "hash": h} for n, h in created]
        orgs += [{"org": o, "idx": index} for o in these]
        heads.update(dict.fromkeys(these, index))
    conn.execute(_INSERT_ENTRY, entries)
    conn.execute(_INSERT_SUBTREE, subtrees)
    moved = {o: at for o, at in heads.items() if state.heads.known.get(o) != at}
    if orgs:
        conn.execute(_INSERT_ENTRY_ORG, orgs)
    if known := [{"head_org": o, "idx": at} for o, at in moved.items() if o in existing]:
        conn.execute(_MOVE_ORG_HEAD, known)
    if new := [{"org": o, "idx": at} for o, at in moved.items() if o not in existing]:
        conn.execute(_INSERT_ORG_HEAD, new)
    state.heads.known.update(moved)
    rng = state.rng
    conn.execute(
        _UPDATE_HEAD, {"size": rng.size, "root": rng.root(), "border": b"".join(rng.hashes)}
    )


INTEGRATE_BATCH = 1024
"""How many pending entries :func:`integrate` folds in at most, by default."""

_SETTLED = "gateway.audit.settled"


def integrate(session: Session, limit: int | None = None) -> int:
    """Fold pending entries into the tree in the caller's transaction; how many it folded.

    Locks the head row (a second integrator waits for it, then finds the rows gone), takes
    up to ``limit`` pending entries in ``seq`` order (None: all of them, in batches of
    :data:`INTEGRATE_BATCH`), gives them the next indices, and deletes them: the entries and
    their removal from the pending table commit together, or neither does. Nothing pending:
    no lock is taken.
    """
    conn = session.connection()
    if not pending.waiting(conn):
        return 0
    state = _for_append(session)
    session.info.pop(_HEAD_CACHE, None)  # put back only once every fold succeeded
    done = 0
    while limit is None or done < limit:
        want = INTEGRATE_BATCH if limit is None else min(INTEGRATE_BATCH, limit - done)
        rows = pending.take(conn, want)
        _fold_batch(conn, state, [fields for _, fields in rows])
        pending.drop(conn, [seq for seq, _ in rows])
        done += len(rows)
        if len(rows) < want:
            break
    session.info[_HEAD_CACHE] = (_innermost(session), state)
    return done


def settle(session: Session) -> None:
    """Integrate what is pending before a read, once per (sub)transaction that appends nothing.

    Every reader of the tree calls this first, so a reader sees every entry committed before
    it (and its own transaction's) exactly as if appends had written the tree themselves.
    """
    here = _innermost(session)
    if session.info.get(_SETTLED) is here:
        return
    integrate(session)
    session.info[_SETTLED] = here


def size(session: Session) -> int:
    """The number of entries in the log (everything pending integrated first)."""
    settle(session)
    head = _read_head(session)
    return 0 if head is None else head[0]


def _check_size(session: Session, n: int, what: str = "size") -> int:
    current = size(session)
    if not 0 <= n <= current:
        raise ProofRangeError(f"{what} {n} is outside the log (0..{current})")
    return current


@functools.lru_cache(maxsize=256)
def _lookup(count: int) -> Select[int, int, bytes]:
    """SELECT the subtrees named by ``count`` (level, index) parameter pairs, built once per count.

    An OR of primary-key equalities: SQLite searches the key for each (a row-value IN scans).
    """
    match = or_(
        *(
            and_(Subtree.level == bindparam(f"l{i}"), Subtree.index == bindparam(f"i{i}"))
            for i in range(count)
        )
    )
    return select(Subtree.level, Subtree.index, Subtree.hash).where(match)


def _hashes(session: Session, ids: Sequence[merkle.NodeID]) -> list[bytes]:
    """The stored hashes of complete subtrees ``ids``, in that order, in one query."""
    if not ids:
        return []
    keys = sorted({(n.level, n.index) for n in ids})
    params: dict[str, int] = {}
    for i, (level, index) in enumerate(keys):
        params[f"l{i}"], params[f"i{i}"] = level, index
    rows = session.connection().execute(_lookup(len(keys)), params).all()
    found = {(r[0], r[1]): r[2] for r in rows}
    try:
        return [found[(n.level, n.index)] for n in ids]
    except KeyError as e:
        raise LogIntegrityError(f"audit log lacks the hash of subtree {e.args[0]}") from None


tile_hashes = _hashes
"""The stored hashes of complete subtrees, in the order asked: what C2SP tlog-tiles are made of."""


def root(session: Session, size: int) -> bytes:
    """The root hash of the first ``size`` entries (0 <= size <= the log's size)."""
    current = _check_size(session, size)
    if size == current:
        head = _read_head(session)
        return head[1] if head is not None else merkle.empty_root()
    return merkle.root_from_nodes(_hashes(session, merkle.root_nodes(size)))


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of entry ``index`` in the tree of the first ``size`` entries."""
    _check_size(session, size)
    if not 0 <= index < size:
        raise ProofRangeError(f"index {index} is not below size {size}")
    nodes = merkle.inclusion_nodes(index, size)
    return nodes.rehash(_hashes(session, nodes.ids))


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of size ``old`` to the one of size ``new``."""
    _check_size(session, new, "new")
    if not 0 <= old <= new:
        raise ProofRangeError(f"old ({old}) must be between 0 and new ({new})")
    nodes = merkle.consistency_nodes(old, new)
    return nodes.rehash(_hashes(session, nodes.ids))


FILTERS = (
    "actor",
    "org",
    "role",
    "action",
    "artifact",
    "grant",
    "subject_org",
    "outcome",
    "request_id",
)


def entries(
    session: Session,
    start: int = 0,
    limit: int = 100,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    **filters: str | None,
) -> list[Entry]:
    """Entries from index ``start`` on, in index order, at most ``limit``.

    Keyword filters (equality, ``None`` = no filter): actor, org, role, action, artifact,
    grant, subject_org, outcome, request_id, and ``concerning`` (an org the entry concerns);
    ``since`` / ``until`` bound the time (inclusive).
    """
    settle(session)
    stmt = select(Entry).where(Entry.index >= start)
    for name, value in filters.items():
        if name not in (*FILTERS, "concerning"):
            raise TypeError(f"unknown audit filter {name!r}")
        if value is None:
            continue
        if name == "concerning":
            stmt = stmt.where(concerning(value))
        else:
            stmt = stmt.where(getattr(Entry, name) == value)
    if since is not None:
        stmt = stmt.where(Entry.time >= utc_naive(since))
    if until is not None:
        stmt = stmt.where(Entry.time <= utc_naive(until))
    return list(session.scalars(stmt.order_by(Entry.index).limit(limit)))


def concerning(org: str) -> ColumnElement[bool]:
    """The entries that concern ``org``, as a SQL predicate over :class:`Entry`."""
    return Entry.index.in_(select(EntryOrg.index).where(EntryOrg.org == org))


def leaf(session: Session, index: int) -> bytes:
    """The exact leaf bytes of entry ``index``."""
    settle(session)
    value = session.scalar(select(Entry.leaf).where(Entry.index == index))
    if value is None:
        raise EntryNotFound(f"audit entry {index} not found")
    return value


def iter_leaves(
    session: Session, start: int = 0, stop: int | None = None, batch: int = 1000
) -> Iterator[tuple[int, bytes]]:
    """``(index, leaf)`` for ``start <= index < stop``, read in batches (constant memory)."""
    end = size(session) if stop is None else stop
    while start < end:
        rows = session.execute(
            select(Entry.index, Entry.leaf)
            .where(Entry.index >= start, Entry.index < min(end, start + batch))
            .order_by(Entry.index)
        ).all()
        if not rows:
            raise LogIntegrityError(f"audit entry {start} is missing")
        for index, data in rows:
            if index != start:
                raise LogIntegrityError(f"audit entry {start} is missing")
            yield index, data
            start += 1


def checkpoint(session: Session, origin: str) -> Checkpoint:
    """The (unsigned) checkpoint of the current head (everything pending integrated first)."""
    settle(session)
    head = _read_head(session)
    if head is None:
        return Checkpoint(origin, 0, merkle.empty_root())
    return Checkpoint(origin, head[0], head[1])


def sign_checkpoint(session: Session, signer: Signer, origin: str) -> str:
    """The signed note text of the current head's checkpoint."""
    return sign_checkpoint_note(checkpoint(session, origin), signer)


def export(session: Session, signer: Signer, origin: str) -> Iterator[str]:
    """An export of the whole log (see :func:`gateway.audit.verify.export_lines`), read in one transaction."""
    from gateway.audit.verify import export_lines

    cp = checkpoint(session, origin)
    return export_lines(iter_leaves(session, 0, cp.size), sign_checkpoint_note(cp, signer))
