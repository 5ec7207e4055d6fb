"""What every client command shares: its options, the API handle, confirmations."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gateway.client.errors import InvocationError
from gateway.client.http import Api
from gateway.client.profiles import resolve
from gateway.client.tables import emit_json

__all__ = [
    "api_for",
    "root_ca_cert",
    "confirm",
    "emit_json",
    "json_option",
    "profile_option",
    "wide_option",
    "yes_option",
]

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


def wide_option(fn: F) -> F:
    return click.option(
        "--wide",
        is_flag=True,
        help="every column, whole ids and exact times (as when the output is not a terminal)",
    )(fn)


def yes_option(what: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        return click.option(
            "--yes", "-y", "yes", is_flag=True, help=f"{what} without asking (scripts)"
        )(fn)

    return decorate


def api_for(profile: str | None, *, pool: int = 8) -> Api:
    """The gateway a command talks to: the profile named, else the environment's (see profiles).

    Its certificate is checked against ``gateway --ca-cert FILE`` when given.
    """
    found = resolve(profile, ca_cert=root_ca_cert())
    return Api(found.url, found.token, pool=pool, verify=found.verify)


def root_ca_cert() -> str | None:
    """The value of the root ``--ca-cert`` option of the command being run, if any."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    value = ctx.find_root().params.get("ca_cert")
    return str(value) if value else None


def confirm(question: str, *, yes: bool, refusal: str) -> bool:
    """Whether to go on: ``--yes``, else the person's answer; without a terminal, a refusal.

    ``refusal`` says what was not done, for the error a script without ``--yes`` gets.
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InvocationError(
            f"{refusal}: this asks for confirmation, and there is no terminal to ask at",
            hint="pass --yes to go ahead without being asked",
        )
    return click.confirm(question, err=True, default=False)
