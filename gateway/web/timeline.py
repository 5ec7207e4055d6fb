"""The review timeline's geometry, drawn as SVG on the server (no script).

Four lanes (requests, decisions, key releases, downloads) over the window's days; each
entry is one mark at its time, with a title a browser shows on hover and a screen reader
reads. This module only places things; the template draws them, with Jinja's escaping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

WIDTH, LEFT, RIGHT, TOP, LANE = 960, 120, 36, 28, 36

LANES = (
    ("requests", ("access.request",)),
    ("decisions", ("access.approve", "access.deny", "grant.revoke", "grant.expire")),
    ("key releases", ("key.release",)),
    ("downloads", ("content.download",)),
)


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    kind: str  # a CSS-free class for the fill colour: the action's lane, or "refused"
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    left: int
    right: float
    lanes: list[tuple[str, float]]
    ticks: list[Tick]
    marks: list[Mark]


REFUSED_LANE = {"access.request": 0, "access.decide": 1, "grant.revoke": 1, "content.read": 3}
"""Where a refusal is drawn: in the lane of what was attempted."""


def lane_of(row: dict[str, Any]) -> int | None:
    """The lane of an entry: its action's, or for a refusal the attempted action's; None: none."""
    if row["action"] == "auth.denied":
        attempted = row["details"].get("attempted")
        return REFUSED_LANE.get(attempted) if isinstance(attempted, str) else None
    for number, (_name, actions) in enumerate(LANES):
        if row["action"] in actions:
            return number
    return None


def draw(rows: list[dict[str, Any]], start: datetime, end: datetime, titles: list[str]) -> Timeline:
    """Place ``rows`` (decoded entries with a naive UTC ``when``), titled by ``titles``."""
    span = (end - start).total_seconds() or 1.0
    inner = WIDTH - LEFT - RIGHT

    def x(t: datetime) -> float:
        return round(LEFT + inner * min(max((t - start).total_seconds() / span, 0.0), 1.0), 1)

    lanes = [(name, TOP + LANE * n + LANE / 2) for n, (name, _a) in enumerate(LANES)]
    marks = []
    for row, title in zip(rows, titles, strict=True):
        number = lane_of(row)
        if number is None:
            continue
        kind = "refused" if row["outcome"] != "ok" else f"lane{number}"
        marks.append(Mark(x(row["when"]), lanes[number][1], kind, title))
    days = max(1, round(span / 86400))
    step = 5 if days > 10 else 1
    ticks = [
        Tick(x(start + timedelta(days=d)), (start + timedelta(days=d)).strftime("%d %b"))
        for d in range(0, days + 1, step)
    ]
    height = TOP + LANE * len(LANES) + 24
    return Timeline(WIDTH, height, LEFT, WIDTH - RIGHT, lanes, ticks, marks)
