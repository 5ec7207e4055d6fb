"""How the dashboard shows things to people: sizes, UTC times with relative hints, names.

Pure functions of their arguments (the current time is passed in), so every page says the
same thing the same way and the tests pin it down.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.clock import utc_naive

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

ACTIONS = {
    "access.request": "requested access",
    "access.approve": "approved a request",
    "access.deny": "denied a request",
    "grant.revoke": "revoked a grant",
    "grant.expire": "grant expired",
    "key.release": "key released",
    "content.download": "downloaded",
    "url.issue": "download URL issued",
    "artifact.read": "read the metadata",
    "upload.create": "opened an upload",
    "upload.complete": "uploaded",
    "upload.abort": "aborted an upload",
    "artifact.withdraw": "withdrew the artifact",
    "artifact.expire": "review window ended",
    "auth.denied": "was refused",
}
"""Plain words for the audit actions a person meets most; others are shown as logged."""


def size(n: int | None) -> str:
    """``285 B``, ``1.5 KiB``, ``256 MiB``, ``2.00 GiB``: three significant digits at most."""
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    value, unit = float(n), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {_UNITS[unit]}"


def utc(t: datetime | None) -> str:
    """``2026-11-27 04:18 UTC`` (minutes: what a person compares); ``—`` for no time."""
    if t is None:
        return "—"
    return utc_naive(t).strftime("%Y-%m-%d %H:%M UTC")


def utc_seconds(t: datetime | None) -> str:
    """``2026-11-27 04:18:25 UTC``, for the audit log, where seconds order the entries."""
    if t is None:
        return "—"
    return utc_naive(t).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(delta: timedelta) -> str:
    """A duration in the largest whole unit that fits: ``3 days``, ``1 hour``, ``45 minutes``."""
    seconds = abs(int(delta.total_seconds()))
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def relative(t: datetime | None, now: datetime) -> str:
    """``in 3 days`` or ``2 hours ago`` (``just now`` within a minute)."""
    if t is None:
        return ""
    delta = utc_naive(t) - utc_naive(now)
    if abs(delta) < timedelta(minutes=1):
        return "just now"
    return f"in {span(delta)}" if delta > timedelta(0) else f"{span(delta)} ago"


def ends(t: datetime | None, now: datetime) -> str:
    """``ends in 3 days`` or ``ended 2 hours ago``: a window's or a grant's end."""
    if t is None:
        return ""
    if utc_naive(t) > utc_naive(now):
        return f"ends in {span(utc_naive(t) - utc_naive(now))}"
    return f"ended {relative(t, now)}" if relative(t, now) != "just now" else "ended just now"


def action(name: str) -> str:
    return ACTIONS.get(name, name)


@dataclass(frozen=True)
class Person:
    """A principal as a person knows it: its name, and the organisation it belongs to."""

    name: str
    org: str

    def __str__(self) -> str:
        return f"{self.name} ({self.org})"


def person(people: dict[str, Person], principal_id: str | None) -> str:
    """``eve (agency-a)``; an id no principal has (the operator, a deleted one) as it is."""
    if principal_id is None:
        return "—"
    found = people.get(principal_id)
    if found is not None:
        return str(found)
    return "the operator" if principal_id == "cli" else principal_id


def pull_command(artifact_id: str, name: str, kind: str) -> str:
    """The command an evaluator runs to pull an artifact (plaintext never goes through a browser)."""
    target = "-o -" if kind == "credential" else f"-o {shlex.quote(_file_name(name))}"
    return f"gateway pull {artifact_id} {target} -i evaluator.agekey"


def _file_name(name: str) -> str:
    """The artifact's name as a file name in the current directory (no path, no leading dot)."""
    base = name.replace("/", "_").replace("\\", "_").lstrip(".")
    return base or "artifact"


def approve_command(request_id: str, hours: int | None) -> str:
    """The command a lab runs to approve on its own machine, where its key is (lab-held custody)."""
    duration = f" --hours {hours}" if hours else ""
    return f"gateway approve {request_id} -i LAB_IDENTITY{duration}"
