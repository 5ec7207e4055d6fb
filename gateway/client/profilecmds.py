"""``gateway profile``: named gateways and tokens, checked when they are saved."""

from __future__ import annotations

import os
import sys

import click

from gateway.client.base import json_option, root_ca_cert
from gateway.client.errors import ClientError
from gateway.client.http import Api, ApiError
from gateway.client.profiles import (
    ProfileError,
    check_ca_cert,
    check_token,
    check_url,
    load_all,
    profiles_path,
    remove,
    save,
)
from gateway.client.tables import emit_json
from gateway.tui import hint, reported, say, shown


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


def _who(url: str, token: str, verify: bool | str) -> str:
    """Who ``token`` is at ``url``, asked of the gateway; a refusal or no answer is an error."""
    api = Api(url, token, timeout=15, verify=verify)
    try:
        me = api.get("/v1/me")
    except ApiError as exc:
        if exc.status == 401:
            raise ProfileError(f"the gateway at {url} refused this token: {exc.detail}") from None
        if exc.lasting:  # a certificate not trusted: its own hint says what to do
            raise ClientError(f"{exc.detail}; nothing was saved", hint=exc.hint) from None
        raise ClientError(
            f"{exc.detail}; nothing was saved",
            hint="check the URL, or save the profile without asking the gateway: --no-check",
        ) from None
    finally:
        api.close()
    return f"{me.get('name')} ({me.get('role')}) of {me.get('org')}"


def _verify(kept: str) -> bool | str:
    """What the check of a profile being saved trusts: its ca_cert, else as any command would."""
    if kept:
        return kept
    root, env = root_ca_cert(), os.environ.get("GATEWAY_CA_CERT", "")
    if root:
        return check_ca_cert(root, "--ca-cert")
    return check_ca_cert(env, "GATEWAY_CA_CERT") if env else True


@profile_group.command("set")
@click.argument("name")
@click.option("--url", required=True, help="the gateway's address, e.g. https://gateway.example")
@click.option(
    "--token",
    default=None,
    help="'-' to read it from stdin; omitted: prompted for (or read from piped stdin)",
)
@click.option(
    "--ca-cert",
    "ca_cert",
    default=None,
    metavar="FILE",
    help="the CA certificate (PEM) that signed the gateway's TLS certificate, kept as ca_cert",
)
@click.option("--no-check", is_flag=True, help="save without asking the gateway who the token is")
@reported(ClientError)
def profile_set(
    name: str, url: str, token: str | None, ca_cert: str | None, no_check: bool
) -> None:
    """Save profile NAME (the token is read from stdin or a prompt, not argv).

    The URL and the token are checked first: the gateway is asked who the token is.
    """
    url = check_url(url)
    kept = check_ca_cert(ca_cert, "--ca-cert") if ca_cert else ""
    value = check_token(_read_token(token))
    who = None if no_check else _who(url, value, _verify(kept))
    save(profiles_path(), name, url, value, kept)
    say(f"profile {name} saved in {profiles_path()}" + (f": {who}" if who else ""))


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
        click.echo(f"{shown(name)}\t{shown(url)}")


@profile_group.command("remove")
@click.argument("name")
@reported(ClientError)
def profile_remove(name: str) -> None:
    """Forget profile NAME (its token is deleted from this machine)."""
    if not remove(profiles_path(), name):
        raise ProfileError(f"no profile named {name!r}")
    say(f"profile {name} removed")
