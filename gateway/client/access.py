"""Access commands: artifacts, requests, approvals, grants, revocation, withdrawal."""

from __future__ import annotations

from typing import Any

import click

from gateway.client.base import api_for, emit_json, json_option, profile_option, table
from gateway.client.errors import ClientError
from gateway.tui import out, reported, say

ARTIFACT_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("kind", "kind"),
    ("org", "org"),
    ("size", "size"),
    ("state", "state"),
    ("share_with", "shared with"),
    ("review_ends_at", "review ends"),
]
REQUEST_COLUMNS = [
    ("id", "id"),
    ("artifact", "artifact"),
    ("requester", "requester"),
    ("state", "state"),
    ("justification", "justification"),
    ("created_at", "asked at"),
]
GRANT_COLUMNS = [
    ("id", "id"),
    ("artifact", "artifact"),
    ("grantee", "grantee"),
    ("not_before", "from"),
    ("not_after", "until"),
    ("state", "state"),
]


def _show(value: Any, as_json: bool, line: str) -> None:
    if as_json:
        emit_json(value)
    else:
        out(line)


@click.command("artifacts")
@click.option(
    "--state", default=None, help="only artifacts in this state (available, withdrawn, expired)"
)
@profile_option
@json_option
@reported(ClientError)
def artifacts(profile: str | None, as_json: bool, state: str | None) -> None:
    """List the artifacts you can see."""
    api = api_for(profile)
    rows = [a for a in api.items("/v1/artifacts") if state is None or a.get("state") == state]
    table(rows, ARTIFACT_COLUMNS, as_json=as_json, title="artifacts")


@click.command("artifact")
@click.argument("artifact")
@profile_option
@json_option
@reported(ClientError)
def artifact(profile: str | None, as_json: bool, artifact: str) -> None:
    """Show one artifact, its manifest included."""
    found = api_for(profile).get(f"/v1/artifacts/{artifact}")
    if as_json:
        emit_json(found)
        return
    for key in (
        "id",
        "name",
        "kind",
        "org",
        "size",
        "state",
        "share_with",
        "submitted_at",
        "review_ends_at",
    ):
        out(f"{key + ':':<16}{found.get(key)}")
    plain = (found.get("manifest") or {}).get("plaintext", {})
    out(f"{'sha256:':<16}{plain.get('sha256')}  (plaintext, {plain.get('size')} bytes)")


@click.command("request")
@click.argument("artifact")
@click.option("--justification", required=True, help="why you need access (the lab reads this)")
@click.option("--hours", "duration_hours", type=int, default=None, help="grant duration asked for")
@profile_option
@json_option
@reported(ClientError)
def request(
    profile: str | None,
    as_json: bool,
    artifact: str,
    justification: str,
    duration_hours: int | None,
) -> None:
    """Ask the lab for access to ARTIFACT."""
    body: dict[str, Any] = {"justification": justification}
    if duration_hours is not None:
        body["duration_hours"] = duration_hours
    made = api_for(profile).post(f"/v1/artifacts/{artifact}/access-requests", body)
    _show(made, as_json, made["id"])
    if not as_json:
        say(f"access request {made['id']} is {made.get('state', 'pending')}")


@click.command("requests")
@click.option(
    "--state", default=None, help="only requests in this state (pending, approved, denied)"
)
@profile_option
@json_option
@reported(ClientError)
def requests_(profile: str | None, as_json: bool, state: str | None) -> None:
    """List access requests (yours, or those on your lab's artifacts)."""
    rows = [
        r
        for r in api_for(profile).items("/v1/access-requests")
        if state is None or r.get("state") == state
    ]
    table(rows, REQUEST_COLUMNS, as_json=as_json, title="access requests")


@click.command("approve")
@click.argument("request_id", metavar="REQUEST")
@click.option(
    "--hours",
    "duration_hours",
    type=int,
    default=None,
    help="grant duration (default: the gateway's)",
)
@profile_option
@json_option
@reported(ClientError)
def approve(
    profile: str | None, as_json: bool, request_id: str, duration_hours: int | None
) -> None:
    """Approve an access request: the evaluator gets a time-limited grant."""
    body = {} if duration_hours is None else {"duration_hours": duration_hours}
    grant = api_for(profile).post(f"/v1/access-requests/{request_id}/approve", body)
    _show(grant, as_json, grant["id"])
    if not as_json:
        say(f"grant {grant['id']} for {grant.get('grantee')} until {grant.get('not_after')}")


@click.command("deny")
@click.argument("request_id", metavar="REQUEST")
@click.option("--reason", default=None, help="told to the evaluator")
@profile_option
@json_option
@reported(ClientError)
def deny(profile: str | None, as_json: bool, request_id: str, reason: str | None) -> None:
    """Deny an access request."""
    body = {} if reason is None else {"reason": reason}
    answer = api_for(profile).post(f"/v1/access-requests/{request_id}/deny", body)
    _show(answer, as_json, request_id)
    if not as_json:
        say(f"access request {request_id} denied")


@click.command("grants")
@click.option("--state", default=None, help="only grants in this state (active, revoked, expired)")
@profile_option
@json_option
@reported(ClientError)
def grants(profile: str | None, as_json: bool, state: str | None) -> None:
    """List grants."""
    rows = [
        g for g in api_for(profile).items("/v1/grants") if state is None or g.get("state") == state
    ]
    table(rows, GRANT_COLUMNS, as_json=as_json, title="grants")


@click.command("revoke")
@click.argument("grant_id", metavar="GRANT")
@profile_option
@reported(ClientError)
def revoke(profile: str | None, grant_id: str) -> None:
    """Revoke a grant now."""
    api_for(profile).delete(f"/v1/grants/{grant_id}")
    say(f"grant {grant_id} revoked")


@click.command("withdraw")
@click.argument("artifact")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@profile_option
@reported(ClientError)
def withdraw(profile: str | None, artifact: str, yes: bool) -> None:
    """Withdraw ARTIFACT: grants revoked, key shredded, ciphertext deleted. Cannot be undone."""
    if not yes and not click.confirm(f"withdraw {artifact} and shred its key?", err=True):
        say("nothing withdrawn")
        return
    api_for(profile).delete(f"/v1/artifacts/{artifact}")
    say(f"artifact {artifact} withdrawn; its key is shredded")


COMMANDS = [artifacts, artifact, request, requests_, approve, deny, grants, revoke, withdraw]
