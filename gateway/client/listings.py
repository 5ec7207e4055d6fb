"""What people list: artifacts, one artifact, access requests, grants.

Tables name people (``eve@agency-a``, not ``prn_...``: :class:`gateway.client.lookup.Names`)
and artifacts by name, and show what a decision needs: a request's justification and
the lab's reason for a denial, a grant's end and whether its key was released. Filters
take only the values there are (``--state bogus`` is an error, not an empty list).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from gateway.client import humane, lookup
from gateway.client.base import api_for, emit_json, json_option, profile_option, wide_option
from gateway.client.errors import ClientError
from gateway.client.tables import Column, plain, table
from gateway.tui import out, reported

F = TypeVar("F", bound=Callable[..., Any])

# The states of gateway.models (which needs the server install), restated for the client.
ARTIFACT_STATES = ("available", "shredding", "withdrawn", "expired")
REQUEST_STATES = ("pending", "approved", "denied")
GRANT_STATES = ("active", "revoked", "expired")

ARTIFACT_COLUMNS = [
    Column("id", "id", "id"),
    Column("name", "name", flex=True),
    Column("kind", "kind", keep=4),
    Column("org", "lab", keep=6),
    Column("size", "size", "size", keep=7),
    Column("state", "state", keep=8),
    Column("share_with", "shared with", flex=True, keep=2),
    Column("review_ends_at", "review ends", "time", keep=5),
    Column("submitted_at", "submitted", "time", wide=True),
    Column("upload", "upload", "id", wide=True),
]
REQUEST_COLUMNS = [
    Column("id", "id", "id"),
    Column("artifact_name", "artifact", flex=True, keep=8),
    Column("requester_name", "requester", keep=8),
    Column("state", "state"),
    Column("created_at", "asked", "time", keep=4),
    Column("duration_hours", "hours", keep=3),
    Column("justification", "justification", flex=True, keep=6),
    Column("reason", "reason", flex=True, keep=7),
    Column("artifact", "artifact id", "id", wide=True),
    Column("requester", "requester id", "id", wide=True),
    Column("decided_by_name", "decided by", wide=True),
    Column("decided_at", "decided", "time", wide=True),
    Column("grant", "grant", "id", wide=True),
]
GRANT_COLUMNS = [
    Column("id", "id", "id"),
    Column("artifact_name", "artifact", flex=True, keep=8),
    Column("grantee_name", "grantee", keep=8),
    Column("state", "state"),
    Column("ends", "ends", "time", keep=7),
    Column("released_at", "key released", "time", keep=5),
    Column("artifact", "artifact id", "id", wide=True),
    Column("grantee", "grantee id", "id", wide=True),
    Column("not_before", "from", "time", wide=True),
    Column("recipient", "released to", wide=True),
    Column("request", "request", "id", wide=True),
]


def state_option(states: tuple[str, ...], what: str) -> Callable[[F], F]:
    return click.option(
        "--state", type=click.Choice(states), default=None, help=f"only {what} in this state"
    )


@click.command("artifacts")
@state_option(ARTIFACT_STATES, "artifacts")
@profile_option
@json_option
@wide_option
@reported(ClientError)
def artifacts(profile: str | None, as_json: bool, wide: bool, state: str | None) -> None:
    """List the artifacts you can see (newest first)."""
    api = api_for(profile)
    rows = [a for a in api.items("/v1/artifacts") if state is None or a.get("state") == state]
    table(rows, ARTIFACT_COLUMNS, as_json=as_json, title="artifacts", wide=wide)


@click.command("artifact")
@click.argument("artifact")
@profile_option
@json_option
@reported(ClientError)
def artifact(profile: str | None, as_json: bool, artifact: str) -> None:
    """Show one ARTIFACT (an id, or the start of one), its signed manifest's digest included."""
    api = api_for(profile)
    found = api.get(f"/v1/artifacts/{lookup.resolve(api, artifact, 'art')}")
    if as_json:
        emit_json(found)
        return
    for label, value in _artifact_lines(found):
        out(f"{label + ':':<16}{value}")


def _when(value: Any) -> str:
    return "-" if value is None else f"{value} ({humane.ago(value)})"


def _plaintext_line(plain_side: dict[str, Any]) -> tuple[str, str]:
    """The manifest's plaintext commitment: v2's is keyed (only a key holder can check it)."""
    size = humane.size(plain_side.get("size"))
    if plain_side.get("commitment"):
        return ("commitment", f"{plain_side['commitment']} (keyed, plaintext {size})")
    if plain_side.get("archive"):
        files = len(plain_side.get("files") or [])
        return ("commitment", f"{plain_side['archive']} (keyed, {files} files, {size})")
    return ("sha256", f"{plain_side.get('sha256')} (plaintext, {size})")


def _artifact_lines(found: dict[str, Any]) -> list[tuple[str, str]]:
    plain_side = (found.get("manifest") or {}).get("plaintext", {})
    size = found.get("size")
    lines = [
        ("id", plain(found.get("id"))),
        ("name", plain(found.get("name"))),
        ("kind", plain(found.get("kind"))),
        ("lab", plain(found.get("org"))),
        ("state", plain(found.get("state"))),
        ("size", f"{humane.size(size)} ({size} bytes of ciphertext)"),
        ("shared with", plain(found.get("share_with")) or "-"),
        ("submitted", _when(found.get("submitted_at"))),
        ("review ends", _when(found.get("review_ends_at"))),
        ("upload", plain(found.get("upload"))),
        _plaintext_line(plain_side),
    ]
    if found.get("description"):
        lines.insert(3, ("description", plain(found["description"])))
    if found.get("ended_at"):
        lines.append(("ended", _when(found["ended_at"])))
    return lines


def _named(api: Any, rows: list[dict[str, Any]], *people: str) -> list[dict[str, Any]]:
    """``rows`` with ``<key>_name`` beside each of ``people`` and ``artifact_name``."""
    names = lookup.Names(api).load(row.get(key) for row in rows for key in people)
    artifacts = lookup.artifact_names(api) if rows else {}
    return [
        {
            **row,
            **{f"{key}_name": names(row.get(key)) for key in people},
            "artifact_name": artifacts.get(str(row.get("artifact")), row.get("artifact")),
        }
        for row in rows
    ]


@click.command("requests")
@state_option(REQUEST_STATES, "requests")
@profile_option
@json_option
@wide_option
@reported(ClientError)
def requests_(profile: str | None, as_json: bool, wide: bool, state: str | None) -> None:
    """List access requests: yours, or those on your lab's artifacts (newest first)."""
    api = api_for(profile)
    rows = list(api.items("/v1/access-requests", state=state))
    shown = rows if as_json else _named(api, rows, "requester", "decided_by")
    table(shown, REQUEST_COLUMNS, as_json=as_json, title="access requests", wide=wide)


def _grant_row(grant: dict[str, Any]) -> dict[str, Any]:
    ended = grant.get("state") != "active" and grant.get("ended_at")
    return {**grant, "ends": ended or grant.get("not_after")}


@click.command("grants")
@state_option(GRANT_STATES, "grants")
@profile_option
@json_option
@wide_option
@reported(ClientError)
def grants(profile: str | None, as_json: bool, wide: bool, state: str | None) -> None:
    """List grants: yours, those on your lab's artifacts, or all (auditors, admins)."""
    api = api_for(profile)
    rows = [g for g in api.items("/v1/grants") if state is None or g.get("state") == state]
    shown = rows if as_json else [_grant_row(g) for g in _named(api, rows, "grantee")]
    table(shown, GRANT_COLUMNS, as_json=as_json, title="grants", wide=wide)


COMMANDS = [artifacts, artifact, requests_, grants]
