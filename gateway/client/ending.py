"""Ending access for good: ``revoke`` a grant, ``withdraw`` an artifact.

Each names what it ends (the artifact's name, the grantee's), says what is destroyed,
asks first (``--yes`` answers for scripts; without a terminal and without ``--yes``
nothing is ended), and says afterwards what it cannot undo: a key already released, a
copy already downloaded.
"""

from __future__ import annotations

from typing import Any

import click

from gateway.client import humane, lookup
from gateway.client.base import api_for, confirm, profile_option, yes_option
from gateway.client.errors import ClientError, InvocationError
from gateway.client.http import Api
from gateway.tui import hint, reported, say


def _grant(api: Api, grant_id: str) -> dict[str, Any]:
    for grant in api.items("/v1/grants"):
        if grant.get("id") == grant_id:
            return grant
    raise InvocationError(f"grant {grant_id} was not found")


@click.command("revoke")
@click.argument("grant_id", metavar="GRANT")
@yes_option("revoke")
@profile_option
@reported(ClientError)
def revoke(profile: str | None, grant_id: str, yes: bool) -> None:
    """Revoke GRANT now: no key is released and no download starts under it any more."""
    api = api_for(profile)
    grant = _grant(api, lookup.resolve(api, grant_id, "grt"))
    who = lookup.Names(api).load([grant.get("grantee")])(grant.get("grantee"))
    what = f"grant {grant['id']} of {who} on {_artifact_name(api, grant)}"
    if not confirm(
        f"revoke {what}? it cannot be undone", yes=yes, refusal=f"{what} was not revoked"
    ):
        say("nothing revoked")
        return
    api.delete(f"/v1/grants/{grant['id']}")
    say(f"{what} revoked")
    if grant.get("released_at"):
        hint(
            f"its key was released to {grant.get('recipient')} {humane.ago(grant['released_at'])}:"
            " what was already downloaded cannot be recalled"
        )


def _artifact_name(api: Api, row: dict[str, Any]) -> str:
    artifact = str(row.get("artifact"))
    name = lookup.artifact_names(api).get(artifact)
    return f"{name} ({humane.short_id(artifact)})" if name else artifact


@click.command("withdraw")
@click.argument("artifact")
@yes_option("withdraw")
@profile_option
@reported(ClientError)
def withdraw(profile: str | None, artifact: str, yes: bool) -> None:
    """Withdraw ARTIFACT: grants revoked, key shredded, ciphertext deleted. Cannot be undone."""
    api = api_for(profile)
    found = api.get(f"/v1/artifacts/{lookup.resolve(api, artifact, 'art')}")
    what = f"{found.get('name')} ({found['id']}, {humane.size(found.get('size'))})"
    active = [
        g
        for g in api.items("/v1/grants", artifact=found["id"])
        if g.get("artifact") == found["id"] and g.get("state") == "active"
    ]
    question = (
        f"withdraw {what}? its {len(active)} active grant(s) are revoked, its key is shredded "
        "and its ciphertext deleted; this cannot be undone"
    )
    if not confirm(question, yes=yes, refusal=f"{what} was not withdrawn"):
        say("nothing withdrawn")
        return
    answer = api.delete(f"/v1/artifacts/{found['id']}")
    pending = isinstance(answer, dict) and answer.get("deletion") == "pending"
    tail = "; its ciphertext will be deleted by the gateway's sweeper" if pending else ""
    say(f"{what} withdrawn: its grants are revoked and its key is shredded{tail}")


COMMANDS: list[click.Command] = [revoke, withdraw]
