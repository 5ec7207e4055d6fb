"""Tables for people: ids on one line, names, human sizes and times, fitted to the terminal.

Design note. A table is a list of rows (the API's items, with whatever the command added,
names say) and a list of :class:`Column`. How it is drawn depends on where it goes:

- on a terminal, ids are shortened to a prefix unique in the table (commands take such
  prefixes back), times are relative (``in 3 days``) and sizes binary (``2.9 GiB``); when
  the terminal is too narrow, the least needed columns are left out first (``keep``),
  then free text (``flex``) is cut with an ellipsis; an id is never cut or wrapped;
- with ``--wide``, or when stdout is not a terminal (a pipe, a file), every column is
  shown at its natural width, with whole ids and RFC 3339 times, one row per line;
- with ``--json``, the rows as the gateway sent them.

Every cell is the server's text made safe (:func:`gateway.tui.shown`) and handed to rich
as :class:`rich.text.Text`, never as markup.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.client import humane
from gateway.tui import say, shown

Kind = Literal["text", "id", "size", "time"]
ALWAYS = 9
SEPARATOR = 3  # two spaces of padding and the column rule between columns
MIN_FLEX = 8


@dataclass(frozen=True)
class Column:
    """One column: the row's ``key``, its heading, how its values read.

    ``keep``: columns with a lower value are left out first on a narrow terminal
    (:data:`ALWAYS`: never); ``flex``: free text, cut with an ellipsis before any column
    is left out for it; ``wide``: only with ``--wide`` (or off a terminal).
    """

    key: str
    heading: str
    kind: Kind = "text"
    keep: int = ALWAYS
    flex: bool = False
    wide: bool = False


@dataclass(frozen=True)
class View:
    """How cells are written: whole (``--wide``, off a terminal) or for a person at one."""

    whole: bool
    digits: int = humane.MIN_HEX
    now: datetime | None = None

    def cell(self, column: Column, value: Any) -> str:
        if value is None or value == "" or value == []:
            return "-"
        if column.kind == "id" and isinstance(value, str):
            return value if self.whole else humane.short_id(value, self.digits)
        if column.kind == "size":
            return humane.size(value)
        if column.kind == "time" and not self.whole:
            return humane.ago(value, self.now)
        return shown(plain(value))


def plain(value: Any) -> str:
    """A value as one line of text: lists joined with commas, objects as JSON."""
    if isinstance(value, list):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def emit_json(value: Any) -> None:
    """JSON for scripts (ASCII only: nothing in it can reach a terminal as a control)."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def terminal_width() -> int | None:
    """The width of the terminal stdout is, or None when it is not one."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((80, 24)).columns


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[Column],
    *,
    as_json: bool,
    title: str,
    wide: bool = False,
    raw: Sequence[dict[str, Any]] | None = None,
    width: Callable[[], int | None] = terminal_width,
) -> None:
    """Print ``rows`` (see the module's note); ``raw``: what ``--json`` prints instead."""
    items = list(rows)
    if as_json:
        emit_json(list(raw) if raw is not None else items)
        return
    if not items:
        say(f"no {title}")
        return
    limit = None if wide else width()
    shown_columns = [c for c in columns if limit is None or not c.wide]
    ids = [str(i.get(c.key)) for i in items for c in shown_columns if c.kind == "id"]
    view = View(whole=limit is None, digits=humane.short_length(ids), now=datetime.now(UTC))
    cells = [[view.cell(c, item.get(c.key)) for c in shown_columns] for item in items]
    kept, widths = fit(shown_columns, cells, limit)
    _print(shown_columns, cells, kept, widths)


def fit(
    columns: Sequence[Column], cells: Sequence[Sequence[str]], limit: int | None
) -> tuple[list[int], list[int]]:
    """Which columns to show (their indexes) and how wide, to fit ``limit`` cells."""
    widths = [
        max([cell_len(c.heading), *(cell_len(row[n]) for row in cells)])
        for n, c in enumerate(columns)
    ]
    kept = list(range(len(columns)))
    if limit is None:
        return kept, widths

    def total() -> int:
        return sum(widths[n] for n in kept) + SEPARATOR * (len(kept) - 1)

    for n in sorted(kept, key=lambda n: columns[n].keep):
        flexible = sum(
            max(0, widths[k] - max(MIN_FLEX, cell_len(columns[k].heading)))
            for k in kept
            if columns[k].flex
        )
        if total() - flexible <= limit or columns[n].keep >= ALWAYS:
            break
        kept.remove(n)
    for n in sorted((k for k in kept if columns[k].flex), key=lambda k: -widths[k]):
        excess = total() - limit
        if excess <= 0:
            break
        floor = min(widths[n], max(MIN_FLEX, cell_len(columns[n].heading)))
        widths[n] = max(floor, widths[n] - excess)
    return kept, widths


def _print(
    columns: Sequence[Column],
    cells: Sequence[Sequence[str]],
    kept: Sequence[int],
    widths: Sequence[int],
) -> None:
    view = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold", expand=False
    )
    for n in kept:
        view.add_column(columns[n].heading, width=widths[n], no_wrap=True, overflow="ellipsis")
    for row in cells:
        view.add_row(*(Text(row[n]) for n in kept))
    total = sum(widths[n] for n in kept) + SEPARATOR * (len(kept) - 1)
    console = Console(
        file=sys.stdout, width=total, highlight=False, markup=False, emoji=False, soft_wrap=False
    )
    console.print(view)
