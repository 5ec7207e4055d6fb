"""Audit commands: ``tail``, ``checkpoint``, ``export``, ``verify``.

``verify`` trusts nothing the gateway says about itself: it takes the leaves (from the
gateway, or from an export file), recomputes every leaf hash and the tree root
(RFC 9162), checks the checkpoint's signature with the verifier key the auditor
supplies (``--key``), and, given a checkpoint saved earlier (``--since``), checks that
today's log extends it. The recomputation is :mod:`gateway.audit.verify`'s.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from gateway.client import auditcheck, auditviews
from gateway.client.auditcheck import checkpoint_size
from gateway.client.base import api_for, emit_json, json_option, profile_option, table
from gateway.client.errors import AuditError, ClientError
from gateway.client.http import Api
from gateway.client.profiles import write_private
from gateway.tui import fail, reported, say

ENTRY_COLUMNS = [
    ("index", "#"),
    ("time", "time"),
    ("actor", "actor"),
    ("org", "org"),
    ("action", "action"),
    ("artifact", "artifact"),
    ("outcome", "outcome"),
]


def entries(api: Api, start: int = 0, **filters: str | None) -> Iterator[dict[str, Any]]:
    """Entries from ``start`` on (the whole log by default), page by page."""
    params = {k: v for k, v in filters.items() if v}
    yield from api.items("/v1/audit/entries", start=start, **params)


@click.command("tail")
@click.option(
    "-n", "count", type=int, default=20, show_default=True, help="how many of the latest entries"
)
@click.option("--artifact", default=None)
@click.option("--actor", default=None, help="principal id")
@click.option("--action", default=None, help="e.g. content.download")
@click.option("--org", default=None, help="only entries of this organisation's principals")
@profile_option
@json_option
@reported(ClientError)
def tail(
    profile: str | None,
    as_json: bool,
    count: int,
    artifact: str | None,
    actor: str | None,
    action: str | None,
    org: str | None,
) -> None:
    """The latest entries of the audit log (those you may read)."""
    api = api_for(profile)
    rows: list[dict[str, Any]] = []
    for item in entries(api, 0, artifact=artifact, actor=actor, action=action):
        if org is not None and item["entry"].get("org") != org:
            continue
        rows.append({**item["entry"], "index": item["index"]})
        if len(rows) > count:
            rows.pop(0)
    table(rows, ENTRY_COLUMNS, as_json=as_json, title="audit entries")


@click.command("checkpoint")
@click.option(
    "--save",
    "save",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="keep the checkpoint in FILE (to check later logs against with verify --since)",
)
@click.option(
    "--key", "key", default=None, help="verifier key (string or file): check the signature first"
)
@profile_option
@reported(ClientError)
def checkpoint(profile: str | None, save: Path | None, key: str | None) -> None:
    """Print (or save) the gateway's latest signed checkpoint."""
    text = api_for(profile).text("/v1/audit/checkpoint")
    if key is not None:
        auditcheck.check_signature(text, auditcheck.read_key(key))
    if save is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    write_private(save, text.encode())
    save.chmod(0o644)
    say(f"checkpoint of {checkpoint_size(text)} entries saved in {save}")


@click.command("export")
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), required=True
)
@profile_option
@reported(ClientError)
def export(profile: str | None, output: Path) -> None:
    """Write the log's leaves and its checkpoint as JSON Lines, for offline verification."""
    api = api_for(profile)
    text = api.text("/v1/audit/checkpoint")
    size = checkpoint_size(text)
    count = auditcheck.write_export(output, text, _leaves(api, size))
    say(f"{count} entries and the checkpoint written to {output}")


def _leaves(api: Api, size: int) -> Iterator[tuple[int, bytes]]:
    for index, leaf, _ in _listed(api, size):
        yield index, leaf


def _listed(api: Api, size: int) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
    """Every entry up to ``size``: index, exact leaf bytes, the entry as the gateway lists it."""
    expected = 0
    for item in entries(api, 0):
        if item["index"] >= size:
            return
        if item["index"] != expected:
            raise AuditError(f"the gateway skipped entry {expected} (sent {item['index']})")
        yield item["index"], base64.b64decode(item["leaf"]), item.get("entry")
        expected += 1
    if expected != size:
        raise AuditError(f"the gateway sent {expected} entries, its checkpoint counts {size}")


@click.command("verify")
@click.option(
    "--key",
    "key",
    required=True,
    envvar="GATEWAY_AUDIT_KEY",
    help="the log's verifier key (vkey string, or a file holding it); never taken from the gateway",
)
@click.option(
    "--since",
    "since",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="a checkpoint saved earlier (repeatable; published anchors count): prove the log still "
    "extends it; the more saved checkpoints, the more exactly a change is located",
)
@click.option(
    "--file",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="verify this export instead of asking the gateway",
)
@profile_option
@json_option
@reported(ClientError)
def verify(
    profile: str | None, as_json: bool, key: str, since: tuple[Path, ...], export_file: Path | None
) -> None:
    """Recompute the log from its leaves and check its signed checkpoint; exit 0 only if all holds."""
    vkey = auditcheck.read_key(key)
    old = [path.read_text("utf-8") for path in since]
    if export_file is not None:
        verdict = auditcheck.verify_file(export_file, vkey, old)
    else:
        api = api_for(profile)
        text = api.text("/v1/audit/checkpoint")
        views = auditviews.ViewCheck()
        verdict = auditcheck.verify_leaves(
            text,
            views.tap(_listed(api, checkpoint_size(text))),
            vkey,
            old,
            consistency=lambda o, n: _consistency(api, o, n),
        )
        verdict = views.check(api, verdict)
    if as_json:
        emit_json(verdict.as_dict())
    else:
        click.echo(verdict.line())
    if not verdict.ok:
        fail("the audit log does not verify")


def _consistency(api: Api, old: int, new: int) -> list[bytes]:
    proof = api.get("/v1/audit/proof/consistency", old=old, new=new)
    return [base64.b64decode(h) for h in proof.get("hashes", [])]


COMMANDS: list[click.Command] = [tail, checkpoint, export, verify]


def group(extra: Sequence[click.Command] = ()) -> click.Group:
    """A new ``audit`` group: the client's commands, then ``extra`` (the operator's, say)."""
    return click.Group(
        "audit", commands=[*COMMANDS, *extra], help="Read and verify the signed transparency log."
    )
