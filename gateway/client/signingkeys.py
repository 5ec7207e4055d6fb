"""``gateway signing-key``: a lab's manifest-signing keys, registered with proof, listed, revoked.

``register`` signs the registration statement with the key (:mod:`gateway.client.possession`),
so the gateway takes a key only from whoever holds it; ``revoke`` retires one for good (a
revoked key is never accepted again, for a new artifact or a new registration). Each change
is an entry of the audit log, with the old and the new state.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.client import possession
from gateway.client.base import api_for, json_option, profile_option, wide_option
from gateway.client.errors import ClientError, InvocationError
from gateway.client.tables import Column, table
from gateway.tui import reported, say

COLUMNS = [
    Column("id", "id", "id"),
    Column("public_key", "public key", flex=True),
    Column("principal", "registered by", "id", keep=4),
    Column("created_at", "registered", "time", keep=6),
    Column("revoked_at", "revoked", "time", keep=5),
]


@click.group("signing-key")
def group() -> None:
    """Your organisation's manifest-signing keys (labs)."""


@group.command("register")
@click.option(
    "-k",
    "--key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the signing key file (as gateway keygen --type signing writes it)",
)
@profile_option
@reported(ClientError)
def register(profile: str | None, key_file: Path) -> None:
    """Register the key in a key file, proving you hold it."""
    public = possession.register(api_for(profile), key_file)
    click.echo(public)
    say(f"signing key {public} registered")


@group.command("list")
@profile_option
@json_option
@wide_option
@reported(ClientError)
def listing(profile: str | None, as_json: bool, wide: bool) -> None:
    """Every signing key of your organisation, revoked ones included."""
    items = api_for(profile).get("/v1/me/signing-keys").get("items", [])
    table(items, COLUMNS, as_json=as_json, title="signing keys", wide=wide)


@group.command("revoke")
@click.argument("key")
@profile_option
@reported(ClientError)
def revoke(profile: str | None, key: str) -> None:
    """Revoke KEY (its id, or its public key) for good."""
    api = api_for(profile)
    items = api.get("/v1/me/signing-keys").get("items", [])
    found = [k for k in items if key in (k.get("id"), k.get("public_key"))]
    if not found:
        raise InvocationError(
            f"your organisation has no signing key {key}",
            hint="gateway signing-key list shows them",
        )
    api.delete(f"/v1/me/signing-keys/{found[0]['id']}")
    say(f"signing key {found[0]['id']} revoked")


COMMANDS: list[click.Command] = [group]
