"""What every client command shares: the profile and JSON options, the API handle, tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.client.http import Api
from gateway.client.profiles import resolve
from gateway.tui import say, shown

F = TypeVar("F", bound=Callable[..., Any])


def profile_option(fn: F) -> F:
    return click.option(
        "--profile",
        "profile",
        default=None,
        metavar="NAME",
        help="named profile from profiles.toml (default: GATEWAY_URL/GATEWAY_TOKEN, "
        "else $GATEWAY_PROFILE, else 'default')",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")(fn)


def api_for(profile: str | None, *, pool: int = 8) -> Api:
    """The gateway a command talks to: the profile named, else the environment's (see profiles)."""
    found = resolve(profile)
    return Api(found.url, found.token, pool=pool)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    as_json: bool,
    title: str | None = None,
) -> None:
    """``rows`` as a rich table (columns: key, heading), or as a JSON list with ``--json``."""
    items = list(rows)
    if as_json:
        emit_json(items)
        return
    if not items:
        say(f"no {title or 'items'}")
        return
    view = Table(title=title, show_lines=False, header_style="bold")
    for _, heading in columns:
        view.add_column(heading, overflow="fold")
    for item in items:
        # Text, never markup: a cell is the server's string, shown escaped (gateway.tui.shown).
        view.add_row(*(Text(shown(cell(item.get(key)))) for key, _ in columns))
    Console(file=sys.stdout, soft_wrap=False, highlight=False, markup=False).print(view)
