"""The one source of time: injectable, so tests move time instead of sleeping.

Times inside the gateway are naive datetimes in UTC (what the database stores). They are
written out as RFC 3339 in UTC with a ``Z`` suffix, in one of two precisions:
:func:`rfc3339` (whole seconds) for the API, and :func:`rfc3339_micro` (microseconds when
there are some) for the audit log's leaves, whose bytes are hashed and cannot change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time as a naive UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class FrozenClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 26, 12, 0, 0)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


def utc_naive(t: datetime) -> datetime:
    """``t`` as a naive UTC datetime (aware times are converted; naive ones are taken as UTC)."""
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _stamp(t: datetime, *, micro: bool) -> str:
    # isoformat, not strftime: RFC 3339 years have four digits, and strftime's %Y does
    # not pad years before 1000 on every platform.
    t = utc_naive(t)
    precision = "microseconds" if micro and t.microsecond else "seconds"
    return t.isoformat(timespec=precision) + "Z"


@overload
def rfc3339(t: datetime) -> str: ...
@overload
def rfc3339(t: None) -> None: ...
@overload
def rfc3339(t: datetime | None) -> str | None: ...
def rfc3339(t: datetime | None) -> str | None:
    """``2026-11-26T12:00:00Z``, to the second (microseconds are dropped); None for None."""
    if t is None:
        return None
    return _stamp(t, micro=False)


def rfc3339_micro(t: datetime) -> str:
    """``2026-11-26T12:00:00Z``, or ``2026-11-26T12:00:00.000250Z`` when there are microseconds."""
    return _stamp(t, micro=True)
