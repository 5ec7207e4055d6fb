"""Repeated denials, counted: the rows behind one ``auth.denied`` entry per interval.

The first refusal of a principal for one thing (the same action, reason, artifact, grant
and owning org) in an interval is an audit entry of its own, as any refusal was. Repeats
of it within ``limits.denial_interval_seconds`` of that first one are counted in its row
of ``denial_counts`` instead, in the refused request's own transaction (fail-closed like
an entry). When the interval has closed (the next such refusal after it, or the sweeper),
the repeats become one entry whose ``details`` say ``count``, ``first`` and ``last``, and
whose request id and client address are the last repeat's. So one token cannot flood the
log, and an auditor loses only the exact times, request ids and addresses of repeats
other than the last.

This module holds the rows and the operations on them; :mod:`gateway.events` records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    String,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.db import Base, cas_update

#: How many closed intervals one sweep turns into entries (the rest wait for the next).
SWEEP_BATCH = 500


class DenialCount(Base):
    """One principal's refusals of one thing since ``window_start``; ``count`` repeats of it."""

    __tablename__ = "denial_counts"
    __table_args__ = (
        UniqueConstraint(
            "actor", "action", "reason", "artifact", "grant_id", "subject_org", name="uq_denials"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(128))
    org: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    # "" rather than NULL: a unique constraint treats NULLs as all different.
    artifact: Mapped[str] = mapped_column(String(64))
    grant: Mapped[str] = mapped_column("grant_id", String(64))
    subject_org: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(DateTime, index=True)
    count: Mapped[int] = mapped_column(Integer)
    first: Mapped[datetime | None] = mapped_column(DateTime)
    last: Mapped[datetime | None] = mapped_column(DateTime)
    last_request_id: Mapped[str | None] = mapped_column(String(64))
    last_ip: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True)
class DenialKey:
    """What makes two refusals the same: who, which action, why, and of what."""

    actor: str
    org: str
    role: str
    action: str
    reason: str
    artifact: str | None
    grant: str | None
    subject_org: str | None

    def where(self) -> tuple[ColumnElement[bool], ...]:
        return (
            DenialCount.actor == self.actor,
            DenialCount.action == self.action,
            DenialCount.reason == self.reason,
            DenialCount.artifact == (self.artifact or ""),
            DenialCount.grant == (self.grant or ""),
            DenialCount.subject_org == (self.subject_org or ""),
        )


def count_repeat(
    session: Session,
    key: DenialKey,
    now: datetime,
    interval: timedelta,
    request_id: str | None,
    ip: str | None,
) -> bool:
    """Count a refusal as a repeat if its interval is still open; whether it was."""
    statement = (
        update(DenialCount)
        .where(*key.where(), DenialCount.window_start > now - interval)
        .values(
            count=DenialCount.count + 1,
            first=func.coalesce(DenialCount.first, now),
            last=now,
            last_request_id=request_id,
            last_ip=ip,
        )
    )
    return cas_update(session, statement) == 1


def closed(session: Session, key: DenialKey) -> DenialCount | None:
    """The row of ``key`` (its interval closed, since :func:`count_repeat` did not count)."""
    return session.scalars(select(DenialCount).where(*key.where())).first()


def start(session: Session, key: DenialKey, now: datetime, row: DenialCount | None) -> None:
    """Open a new interval for ``key`` at ``now``, reusing its old row if it has one."""
    if row is None:
        row = DenialCount(
            actor=key.actor,
            org=key.org,
            role=key.role,
            action=key.action,
            reason=key.reason,
            artifact=key.artifact or "",
            grant=key.grant or "",
            subject_org=key.subject_org or "",
        )
        session.add(row)
    row.window_start, row.count, row.first, row.last = now, 0, None, None
    row.last_request_id = row.last_ip = None
    session.flush()


def expired(session: Session, now: datetime, interval: timedelta) -> list[DenialCount]:
    """Rows whose interval has closed, oldest first, at most :data:`SWEEP_BATCH`."""
    return list(
        session.scalars(
            select(DenialCount)
            .where(DenialCount.window_start <= now - interval)
            .order_by(DenialCount.window_start, DenialCount.id)
            .limit(SWEEP_BATCH)
        )
    )


def forget(session: Session, row: DenialCount) -> None:
    session.execute(delete(DenialCount).where(DenialCount.id == row.id))
