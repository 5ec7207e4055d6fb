"""The client's ``gateway`` command: profiles, whoami, keys, push, pull, access, audit.

Design note. :func:`build` makes the ``gateway`` group: every client command, the
client's own ``audit`` group, and whatever commands, ``audit`` subcommands and root
options a caller adds: :mod:`gateway.cli` adds the operator's in a server install.
Nothing is registered at import time and no group is changed after it is made, so
the client alone (:data:`main`, ``python -m gateway.client``) imports nothing of the
server. ``-v`` / ``--verbose`` sets the log level of what is logged on stderr
(retries, each request's status with ``-vv``; never a token).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from gateway.client import access, audit, auditmine, signingkeys, transfer
from gateway.client.base import api_for, emit_json, json_option, profile_option
from gateway.client.errors import ClientError
from gateway.client.profiles import ProfileError, load_all, profiles_path, remove, resolve, save
from gateway.tui import hint, reported, say

DISTRIBUTION = "model-artifact-gateway"
CONTEXT = {"help_option_names": ["-h", "--help"]}
LOG_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


@click.command("whoami")
@profile_option
@json_option
@reported(ClientError)
def whoami(profile: str | None, as_json: bool) -> None:
    """Who the gateway thinks you are."""
    found = resolve(profile)
    me = api_for(profile).get("/v1/me")
    if as_json:
        emit_json({**me, "gateway": found.url, "profile": found.name})
        return
    click.echo(f"{me.get('name')} ({me.get('role')}) of {me.get('org')} at {found.url}")
    if me.get("recipient"):
        click.echo(f"recipient:   {me['recipient']}")
    if me.get("signing_key"):
        click.echo(f"signing key: {me['signing_key']}")


@click.group("profile")
def profile_group() -> None:
    """Named gateways and tokens, in $XDG_CONFIG_HOME/gateway/profiles.toml (mode 0600)."""


def _read_token(token: str | None) -> str:
    if token and token != "-":  # noqa: S105 - "-" means stdin
        hint(
            "a token on the command line may be kept in your shell history; "
            "omit --token to be prompted, or pipe it in with --token -"
        )
        return token
    if token == "-" or not sys.stdin.isatty():  # noqa: S105
        value = sys.stdin.readline().strip()
    else:
        value = click.prompt("token", hide_input=True, err=True).strip()
    if not value:
        raise ProfileError("no token given")
    return value


@profile_group.command("set")
@click.argument("name")
@click.option("--url", required=True, help="the gateway's address, e.g. https://gateway.example")
@click.option(
    "--token",
    default=None,
    help="'-' to read it from stdin; omitted: prompted for (or read from piped stdin)",
)
@reported(ClientError)
def profile_set(name: str, url: str, token: str | None) -> None:
    """Save profile NAME (the token is read from stdin or a prompt, not argv)."""
    save(profiles_path(), name, url, _read_token(token))
    say(f"profile {name} saved in {profiles_path()}")


@profile_group.command("list")
@json_option
@reported(ClientError)
def profile_list(as_json: bool) -> None:
    """The saved profiles (tokens are never printed)."""
    found = {name: p.get("url", "") for name, p in load_all(profiles_path()).items()}
    if as_json:
        emit_json(found)
        return
    for name, url in sorted(found.items()):
        click.echo(f"{name}\t{url}")


@profile_group.command("remove")
@click.argument("name")
@reported(ClientError)
def profile_remove(name: str) -> None:
    """Forget profile NAME."""
    if not remove(profiles_path(), name):
        raise ProfileError(f"no profile named {name!r}")
    say(f"profile {name} removed")


def log_level(verbose: int) -> int:
    """WARNING, INFO with ``-v``, DEBUG with ``-vv``."""
    return LOG_LEVELS[min(max(verbose, 0), len(LOG_LEVELS) - 1)]


def configure_logging(verbose: int) -> None:
    """With ``-v``, log on stderr at INFO (``-vv``: DEBUG); without, leave logging as it is.

    Left alone, Python prints warnings and errors on stderr anyway, and ``gateway serve``
    keeps its own log format at ``server.log_level``.
    """
    if verbose > 0:
        logging.basicConfig(
            level=log_level(verbose), format="gateway: %(levelname)s: %(name)s: %(message)s"
        )


COMMANDS: list[click.Command] = [
    whoami,
    profile_group,
    *transfer.COMMANDS,
    *access.COMMANDS,
    *signingkeys.COMMANDS,
]


def build(
    commands: Sequence[click.Command] = (),
    audit_commands: Sequence[click.Command] = (),
    params: Sequence[click.Parameter] = (),
) -> click.Group:
    """A new ``gateway`` group: the client's commands and ``audit`` group, plus those given.

    ``params`` are further root options; their values are in the root context's
    ``params`` for the commands that read them.
    """

    @click.group(
        "gateway",
        context_settings=CONTEXT,
        commands=[*COMMANDS, audit.group([auditmine.mine, *audit_commands]), *commands],
        params=list(params),
    )
    @click.option(
        "-v",
        "--verbose",
        count=True,
        help="say more on stderr: -v retries and progress notes, -vv every request",
    )
    @click.version_option(package_name=DISTRIBUTION, prog_name="gateway")
    def gateway(verbose: int, **_root_options: Any) -> None:
        """Secure model-artifact transfer gateway."""
        configure_logging(verbose)

    return gateway


main = build()
"""The client alone (``python -m gateway.client``); the ``gateway`` command is :data:`gateway.cli.main`."""
