"""Client commands of the ``gateway`` CLI: profiles, keys, push, pull, access, audit."""

from __future__ import annotations

import sys

import click

from gateway.client import access, audit, transfer
from gateway.client.base import api_for, emit_json, json_option, profile_option, reported, say
from gateway.client.profiles import ProfileError, profiles_path, remove, resolve, save


@click.command("whoami")
@profile_option
@json_option
@reported
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
        say(
            "hint: a token on the command line may be kept in your shell history; "
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
@reported
def profile_set(name: str, url: str, token: str | None) -> None:
    """Save profile NAME (the token is read from stdin or a prompt, not argv)."""
    save(profiles_path(), name, url, _read_token(token))
    say(f"profile {name} saved in {profiles_path()}")


@profile_group.command("list")
@json_option
@reported
def profile_list(as_json: bool) -> None:
    """The saved profiles (tokens are never printed)."""
    from gateway.client.profiles import load_all

    found = {name: p.get("url", "") for name, p in load_all(profiles_path()).items()}
    if as_json:
        emit_json(found)
        return
    for name, url in sorted(found.items()):
        click.echo(f"{name}\t{url}")


@profile_group.command("remove")
@click.argument("name")
@reported
def profile_remove(name: str) -> None:
    """Forget profile NAME."""
    if not remove(profiles_path(), name):
        raise ProfileError(f"no profile named {name!r}")
    say(f"profile {name} removed")


def register(group: click.Group) -> None:
    """Add the client commands to the ``gateway`` group."""
    for command in [whoami, profile_group, *transfer.COMMANDS, *access.COMMANDS]:
        group.add_command(command)
    existing = group.commands.get("audit")
    if isinstance(existing, click.Group):  # operator audit commands: share the group
        for name, command in audit.audit_group.commands.items():
            existing.commands.setdefault(name, command)
    else:
        group.add_command(audit.audit_group)
