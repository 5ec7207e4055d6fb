"""Interrupted pushes left on this machine: list them, resume them, or abort them.

An interrupted push keeps its state (the upload id and the age file key, mode 0600) in
``<config dir>/pushes/`` until it completes or is aborted (:mod:`gateway.client.state`),
and the gateway keeps the parts already sent until the upload times out. ``gateway
uploads`` lists those states with what the gateway holds of each; ``gateway uploads
abort UPLOAD`` discards the parts on the gateway and forgets the state here.
"""

from __future__ import annotations

from typing import Any

import click

from gateway.client import humane, state
from gateway.client import push as pushing
from gateway.client.base import (
    api_for,
    confirm,
    json_option,
    profile_option,
    wide_option,
    yes_option,
)
from gateway.client.errors import ClientError, InvocationError
from gateway.client.http import Api, ApiError
from gateway.client.push import expected_size
from gateway.client.tables import Column, table
from gateway.tui import reported, say

COLUMNS = [
    Column("upload", "upload", "id"),
    Column("name", "name", flex=True),
    Column("size", "size", "size", keep=5),
    Column("held", "held", keep=7),
    Column("state", "state"),
    Column("expires_at", "expires", "time", keep=4),
    Column("file", "file", flex=True, keep=3),
    Column("gateway", "gateway", wide=True),
]


def _parts(saved: state.PushState) -> int:
    """How many parts the upload has in all."""
    total = expected_size(len(saved.header_bytes), saved.file.size)
    return max(1, -(-total // saved.part_size))


def _row(api: Api, saved: state.PushState) -> dict[str, Any]:
    row: dict[str, Any] = {
        "upload": saved.upload,
        "name": saved.name,
        "file": saved.file.path,
        "size": saved.file.size,
        "gateway": saved.gateway,
    }
    if saved.gateway != api.url:
        return {**row, "state": "another gateway"}
    try:
        found = api.get(f"/v1/uploads/{saved.upload}")
    except ApiError as exc:
        if exc.status in (403, 404, 410):
            return {**row, "state": "gone"}
        raise
    parts = pushing.parts_of(found)
    held = sum(size for size, _ in parts.values())
    return {
        **row,
        "state": found.get("state"),
        "expires_at": found.get("expires_at"),
        "held": f"{len(parts)} of {_parts(saved)} parts, {humane.size(held)}",
    }


@click.group("uploads", invoke_without_command=True)
@profile_option
@json_option
@wide_option
@click.pass_context
@reported(ClientError)
def uploads(ctx: click.Context, profile: str | None, as_json: bool, wide: bool) -> None:
    """Interrupted pushes kept on this machine, and what the gateway holds of each.

    Resume one with `gateway push --resume UPLOAD --signing-key KEY`, or discard it with
    `gateway uploads abort UPLOAD`.
    """
    if ctx.invoked_subcommand is not None:
        return
    api = api_for(profile)
    rows = [_row(api, saved) for saved in state.all_saved()]
    table(rows, COLUMNS, as_json=as_json, title="interrupted pushes on this machine", wide=wide)


def _find(value: str) -> state.PushState | None:
    matches = [s for s in state.all_saved() if s.upload.startswith(value)]
    if len(matches) > 1:
        raise InvocationError(f"{value} is the start of {len(matches)} uploads' ids")
    return matches[0] if matches else None


@uploads.command("abort")
@click.argument("upload", metavar="UPLOAD")
@yes_option("abort")
@profile_option
@reported(ClientError)
def abort(profile: str | None, upload: str, yes: bool) -> None:
    """Abort UPLOAD: the gateway discards its parts; the push state here is deleted."""
    api = api_for(profile)
    saved = _find(upload)
    upload_id = saved.upload if saved is not None else upload
    name = f"{saved.name} ({saved.file.path})" if saved is not None else "an upload"
    what = f"upload {upload_id} of {name}"
    if not confirm(
        f"abort {what}? the parts sent are discarded", yes=yes, refusal=f"{what} was not aborted"
    ):
        say("nothing aborted")
        return
    try:
        api.delete(f"/v1/uploads/{upload_id}")
    except ApiError as exc:
        if exc.status not in (404, 409, 410) or saved is None:
            raise
        say(f"the gateway no longer holds {what} ({exc.detail})")
    if saved is not None:
        state.delete(saved)
    say(f"{what} aborted; its push state on this machine is deleted")
