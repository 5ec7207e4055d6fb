"""Per-org chains in the database: which orgs each entry concerns, and each org's latest entry.

Design note (the format is :mod:`gateway.audit.leaf`'s). Two small tables beside the log:

- ``audit_entry_orgs`` holds one ``(org, index)`` row per org an entry concerns
  (:func:`gateway.audit.leaf.concerns` of its leaf). It is what scopes a lab's or an
  agency's view, and what ``concerning=`` filters on: a copy, like every filter column,
  that the leaves let a reader check (the org's chain names every entry it should hold).
- ``audit_org_heads`` holds each org's latest entry: the ``prev`` of the next entry that
  concerns it. Appends read and move it while they hold the log's head lock, so the chains
  are as single as the sequence.

:class:`Heads` is an append's view of the second table within one transaction. The chain
itself is computed by :func:`gateway.audit.leaf.link` from the heads it is given, so
sequencing and chaining can move apart without changing the format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import BigInteger, Connection, String, bindparam, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.db import Base


class EntryOrg(Base):
    """One org an entry concerns: the rows a lab's or an agency's view is scoped by."""

    __tablename__ = "audit_entry_orgs"
    __table_args__ = {"sqlite_with_rowid": False}
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    index: Mapped[int] = mapped_column("idx", BigInteger, primary_key=True, autoincrement=False)


class OrgHead(Base):
    """The index of the latest entry concerning an org (moved by every append that concerns it)."""

    __tablename__ = "audit_org_heads"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    index: Mapped[int] = mapped_column("idx", BigInteger)


_INSERT_ORGS = insert(EntryOrg)
_INSERT_HEAD = insert(OrgHead)
_UPDATE_HEAD = update(OrgHead).where(OrgHead.org == bindparam("head_org"))


class Heads:
    """The org heads one transaction has read or moved (valid while it holds the log's lock).

    ``known`` holds only rows that exist; an org missing from it is looked up before its
    head is written, so a new org's row is inserted and a known one's updated.
    """

    def __init__(self) -> None:
        self.known: dict[str, int] = {}

    def read(self, conn: Connection, orgs: Iterable[str]) -> None:
        """Make sure ``known`` holds the heads of ``orgs`` that exist."""
        missing = [o for o in orgs if o not in self.known]
        if missing:
            rows = conn.execute(select(OrgHead.org, OrgHead.index).where(OrgHead.org.in_(missing)))
            self.known.update({org: at for org, at in rows})

    def read_all(self, conn: Connection) -> dict[str, int]:
        """Every org's head (a publication appends a heads entry for each of them)."""
        self.known.update({org: at for org, at in conn.execute(select(OrgHead.org, OrgHead.index))})
        return self.known

    def move(self, conn: Connection, concerned: Sequence[str], index: int) -> None:
        """Entry ``index`` concerns ``concerned``: record it, and make it each one's head."""
        if not concerned:
            return
        conn.execute(_INSERT_ORGS, [{"org": o, "idx": index} for o in concerned])
        known = [o for o in concerned if o in self.known]
        new = [o for o in concerned if o not in self.known]
        if known:
            conn.execute(_UPDATE_HEAD, [{"head_org": o, "idx": index} for o in known])
        if new:
            conn.execute(_INSERT_HEAD, [{"org": o, "idx": index} for o in new])
        self.known.update(dict.fromkeys(concerned, index))


def org_heads(session: Session) -> dict[str, int]:
    """Every org's latest entry index, as the next append would link to it."""
    return {org: at for org, at in session.execute(select(OrgHead.org, OrgHead.index))}
