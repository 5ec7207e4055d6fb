"""What every client command shares: the profile option, error reporting, tables and JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gateway.client.profiles import resolve
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.client.http import Api

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, hint: str | None = None, code: int = 1) -> None:
    from gateway.cli import fail as cli_fail

    cli_fail(message, hint=hint, code=code)


def say(message: str) -> None:
    """A line for the person at the terminal (stderr, so stdout stays for data)."""
    click.echo(f"gateway: {message}", err=True)


def reported(fn: F) -> F:
    """Errors as one line ``gateway: error: ...`` and a non-zero exit status, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GatewayError as exc:
            fail(exc.diagnostics())
        except OSError as exc:
            fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return wrapper  # type: ignore[return-value]


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
    from gateway.client.http import Api

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
    from rich.console import Console
    from rich.table import Table

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
        view.add_row(*(cell(item.get(key)) for key, _ in columns))
    Console(file=sys.stdout, soft_wrap=False).print(view)
