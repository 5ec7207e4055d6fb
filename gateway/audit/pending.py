"""Entries sequenced but not yet integrated: the audit log's ``audit_pending`` table.

Design note (after Tessera's split of sequencing from integration). Recording an entry and
folding it into the tree are two steps:

- **Sequencing** (:func:`gateway.audit.store.append`, in the effect's own transaction) inserts
  the entry's fields here, under an autoincrement ``seq``, and nothing else: it takes no
  lock that another request's transaction waits for. The row commits with the effect, so
  the entry is durable before the access is answered; if the insert fails, the effect
  does not happen.
- **Integration** (:func:`gateway.audit.store.integrate`) locks the log's head row, reads
  pending rows in ``seq`` order, gives them the next indices, writes their leaves, the
  subtrees and the org heads, moves the head and deletes the rows, in one transaction.

``seq`` orders the rows only: on PostgreSQL autoincrement values commit out of order, so a
row may appear below one integrated already. The integrator, not ``seq``, assigns the log
index, so that is harmless: the log stays one sequence without gaps. What is here survives
a crash and is integrated by the next run.

``details`` is kept as its canonical JSON text, so the leaf written later holds exactly the
object the caller gave.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Integer,
    String,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.audit import leaf as leafmod
from gateway.db import Base

_SEQ = BigInteger().with_variant(Integer, "sqlite")  # SQLite: the rowid itself

PLACEHOLDER_INDEX = 2**63 - 1
"""The largest index the log can hold (a signed 64-bit column): no real index or ``prev`` is longer."""


class EntryFields:
    """The fields of an entry a reader filters on: sequenced here, then columns of the entry."""

    time: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(128))
    org: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[str | None] = mapped_column(String(64))
    grant: Mapped[str | None] = mapped_column("grant_id", String(64))
    subject_org: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))


class Pending(EntryFields, Base):
    """One sequenced entry: the fields :func:`gateway.audit.store.append` was given, no leaf yet."""

    __tablename__ = "audit_pending"
    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    ip: Mapped[str | None] = mapped_column(Text)  # the leaf bounds it, not a column
    details: Mapped[str] = mapped_column(Text)


_INSERT = insert(Pending)
_COLUMNS = (
    Pending.seq,
    Pending.time,
    Pending.actor,
    Pending.org,
    Pending.role,
    Pending.action,
    Pending.artifact,
    Pending.grant,
    Pending.subject_org,
    Pending.outcome,
    Pending.request_id,
    Pending.ip,
    Pending.details,
)
_FIELDS = tuple(c.key for c in _COLUMNS)
_ANY = select(Pending.seq).limit(1)


def check_size(fields: dict[str, Any]) -> None:
    """Refuse now (:class:`gateway.audit.leaf.EntryTooLarge`) an entry integration could not write.

    The leaf is encoded with :data:`PLACEHOLDER_INDEX` as its index and as every ``prev``
    link. Every other field is the one integration writes, and a real index or link (or a
    ``null`` link) is never longer in decimal, so if this leaf fits, the real one does.
    """
    concerned = leafmod.concerns({"v": leafmod.VERSION, **fields, "prev": {}})
    prev = dict.fromkeys(concerned, PLACEHOLDER_INDEX)
    leafmod.encode_leaf(index=PLACEHOLDER_INDEX, **fields, prev=prev)


def add(conn: Connection, fields: dict[str, Any]) -> None:
    """Insert one sequenced entry (``fields`` as :func:`gateway.audit.leaf.encode_leaf` takes them)."""
    row = {k: v for k, v in fields.items() if k not in ("grant", "details")}
    row["grant_id"] = fields["grant"]
    row["details"] = leafmod.canonical_json(fields["details"]).decode("utf-8")
    conn.execute(_INSERT, row)


def waiting(conn: Connection) -> bool:
    """Whether any committed (or this transaction's own) entry waits for integration."""
    return conn.execute(_ANY).first() is not None


def take(conn: Connection, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` pending entries in ``seq`` order: ``(seq, fields for encode_leaf)``."""
    rows = conn.execute(select(*_COLUMNS).order_by(Pending.seq).limit(limit)).all()
    out = []
    for row in rows:
        fields = dict(zip(_FIELDS, row, strict=True))
        seq = fields.pop("seq")
        fields["details"] = json.loads(fields["details"])
        out.append((int(seq), fields))
    return out


def drop(conn: Connection, seqs: Sequence[int]) -> None:
    """Delete the pending rows ``seqs`` (integrated in this transaction)."""
    if seqs:
        conn.execute(delete(Pending).where(Pending.seq.in_(seqs)))
