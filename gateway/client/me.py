"""``gateway whoami``: who the gateway thinks you are, and the keys it holds for you."""

from __future__ import annotations

from typing import Any

import click

from gateway.client import keys
from gateway.client.base import api_for, emit_json, json_option, profile_option
from gateway.client.errors import ClientError
from gateway.client.http import Api, ApiError
from gateway.client.profiles import resolve
from gateway.tui import out, reported


def principal_id(api: Api) -> str | None:
    """The caller's principal id (``GET /v1/principals/me``; None from a gateway without it)."""
    try:
        return str(api.get("/v1/principals/me")["id"])
    except (ApiError, KeyError):
        return None


def recipient_history(api: Api) -> list[dict[str, Any]] | None:
    """The recipients the audit log says this evaluator registered before, oldest first.

    None: this gateway's log does not record recipient registrations yet, so there is no
    history to show, only the current recipient (``GET /v1/me``).
    """
    return None


@click.command("whoami")
@profile_option
@json_option
@reported(ClientError)
def whoami(profile: str | None, as_json: bool) -> None:
    """Who the gateway thinks you are: principal, organisation, role, registered keys."""
    found = resolve(profile)
    api = api_for(profile)
    me = api.get("/v1/me")
    me = {**me, "id": principal_id(api)}
    history = recipient_history(api) if me.get("role") == "evaluator" else None
    if as_json:
        emit_json({**me, "gateway": found.url, "profile": found.name, "recipient_history": history})
        return
    out(f"{me.get('name')} ({me.get('role')}) of {me.get('org')} at {found.url}")
    if me.get("id"):
        out(f"id:          {me['id']}")
    for label, key in (("recipient", "recipient"), ("signing key", "signing_key")):
        if me.get(key):
            out(f"{label + ':':<13}{me[key]}")
            out(f"{'':<13}{keys.fingerprint(str(me[key]))}")
    if me.get("role") == "evaluator":
        out(
            "earlier:     not recorded by this gateway yet"
            if history is None
            else f"earlier:     {', '.join(str(h.get('recipient')) for h in history) or 'none'}"
        )
