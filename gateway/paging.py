"""Keyset paging: the one scheme every list of the gateway uses.

A list is ordered by a :class:`Keyset`, columns that together identify a row (for
artifacts ``submitted_at`` newest first, then ``id``; for audit entries the index). A page
is one query for ``limit + 1`` rows after the last key of the previous page: rows inserted
while a client pages through never make it skip or repeat one, and where the database
reads the list through an index on its keys (each list has one), a page does not cost the
rows before it, as an offset would.

The cursor handed to the client is opaque: the last row's key as a JSON array in
URL-safe base64. It is checked on the way back in: a cursor that does not decode, has
the wrong shape, carries a number outside 0..2^63-1, or a string key that is not an id
(every string key of a list is a row's id: 1-64 characters of ``A-Za-z0-9_-``, so never a
NUL, a control character or a lone surrogate) is a 400, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.errors import BadRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_INT = (1 << 63) - 1
"""The largest integer a cursor or a position may carry (a signed 64-bit column)."""

_MAX_CURSOR = 1024
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z", re.ASCII)
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")
_NOT_OURS = "cursor is not one this gateway issued"

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """Which page a client asks for: at most ``limit`` rows after ``cursor`` (None: the first)."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not 1 <= self.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be an integer between 1 and {MAX_LIMIT}")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the cursor of the next one (None when this is the last)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Key:
    """One column of a list's order: its direction, and the Python type of its values."""

    column: InstrumentedAttribute[Any]
    kind: type[datetime] | type[str] | type[int]
    """``str`` is for id columns only: a cursor's string key must be an id."""
    descending: bool = False


class Keyset:
    """A list's order, as the columns that identify a row; builds its queries and cursors."""

    def __init__(self, *keys: Key) -> None:
        self.keys = keys

    def order_by(self) -> list[ColumnElement[Any]]:
        return [k.column.desc() if k.descending else k.column.asc() for k in self.keys]

    def after(self, values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows that come after the row whose key is ``values``, in this order."""
        clauses = []
        for i, key in enumerate(self.keys):
            later = key.column < values[i] if key.descending else key.column > values[i]
            same = [self.keys[j].column == values[j] for j in range(i)]
            clauses.append(and_(*same, later))
        return or_(*clauses)

    def cursor(self, row: object) -> str:
        values = [getattr(row, k.column.key) for k in self.keys]
        encoded = [v.isoformat() if isinstance(v, datetime) else v for v in values]
        text = json.dumps(encoded, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(text).decode().rstrip("=")

    def decode(self, cursor: str) -> list[Any]:
        """The key a cursor of this list carries; 400 for anything this gateway did not issue."""
        if len(cursor) > _MAX_CURSOR or not _CURSOR.match(cursor):
            raise BadRequest(_NOT_OURS)
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
            raise BadRequest(_NOT_OURS) from None
        if not isinstance(raw, list) or len(raw) != len(self.keys):
            raise BadRequest(_NOT_OURS)
        return [_value(key.kind, value) for key, value in zip(self.keys, raw, strict=True)]


def _value(kind: type, value: object) -> Any:
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
            return value
    elif kind is str:
        if isinstance(value, str) and _ID.match(value):
            return value
    elif isinstance(value, str) and len(value) <= 32:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(_NOT_OURS) from None
        if when.tzinfo is None and when.isoformat() == value:  # as issued, to the character
            return when
    raise BadRequest(_NOT_OURS)


def page(session: Session, query: Select[T], keyset: Keyset, request: PageRequest) -> Page[T]:
    """One page of ``query``'s rows in ``keyset``'s order, after ``request.cursor``."""
    ordered = query.order_by(*keyset.order_by())
    if request.cursor:
        ordered = ordered.where(keyset.after(keyset.decode(request.cursor)))
    rows = list(session.scalars(ordered.limit(request.limit + 1)))
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    return Page(rows, keyset.cursor(rows[-1]) if more else None)
