"""Values as people read them: sizes, times from now, short ids, articles.

Design note. Tables show what a person needs to act: ``2.9 GiB`` rather than
``3113851288``, ``in 3 days`` rather than an RFC 3339 stamp, ``art_948e968d`` rather than
all 24 characters of an id. Ids are shortened the way git shortens commits: to a prefix
unique among the ids shown together (at least :data:`MIN_HEX` hex digits), and every
command that takes an id takes such a prefix too (:mod:`gateway.client.lookup`). Sizes
are binary (KiB, MiB, GiB), as the progress bar's are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

ID = re.compile(r"^(art|req|grt|prn|up|key|tok)_[0-9a-f]{20}$")
"""A full gateway id: a kind prefix and 20 hex digits (80 random bits)."""
MIN_HEX = 8
UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(value: object) -> str:
    """``1.5 GiB``, ``12 bytes``; anything but a non-negative integer as it is."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "-" if value is None else str(value)
    amount, unit = float(value), 0
    while amount >= 1024 and unit < len(UNITS) - 1:
        amount, unit = amount / 1024, unit + 1
    if unit == 0:
        return f"{value} byte" + ("" if value == 1 else "s")
    return f"{amount:.1f} {UNITS[unit]}"


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 UTC time as the API writes it (``...Z``, microseconds or not), else None."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:
        return None


def _span(seconds: float) -> str:
    for unit, length in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length * (2 if unit == "day" else 1):
            count = int(seconds / length + 0.5)
            return f"{count} {unit}" + ("s" if unit == "day" and count != 1 else "")
    return f"{int(seconds)} s"


def ago(value: object, now: datetime | None = None) -> str:
    """``in 3 days``, ``5 min ago``, ``now``; a value that is not an API time as it is."""
    when = parse_time(value)
    if when is None:
        return "-" if value is None else str(value)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"


def short_length(ids: Iterable[str]) -> int:
    """Hex digits that keep every id of ``ids`` apart (at least :data:`MIN_HEX`)."""
    distinct = {i for i in ids if ID.match(i)}
    for digits in range(MIN_HEX, 21):
        if len({_cut(i, digits) for i in distinct}) == len(distinct):
            return digits
    return 20


def _cut(value: str, digits: int) -> str:
    prefix, _, hexes = value.partition("_")
    return f"{prefix}_{hexes[:digits]}"


def short_id(value: str, digits: int = MIN_HEX) -> str:
    """``art_948e968d`` for a full id (``digits`` hex digits); anything else as it is."""
    return _cut(value, digits) if ID.match(value) else value


def article(word: str) -> str:
    """``an auditor``, ``a lab``: the indefinite article and the word."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word
