"""Audit commands: ``tail``, ``checkpoint``, ``export``, ``verify``, ``key``; ``proof`` and
``verify-proof`` are :mod:`gateway.client.auditproof`'s.

``verify`` trusts nothing the gateway says about itself: it takes the leaves (from the
gateway, or from an export file), recomputes every leaf hash and the tree root
(RFC 9162), checks the checkpoint's signature with the verifier key the auditor
supplies (``--key``) or under a C2SP tlog-policy (``--policy``: the log's key and the
witnesses' quorum), and, given a checkpoint saved earlier (``--since``), checks that
today's log extends it. The recomputation is :mod:`gateway.audit.verify`'s.

Every command that takes a verifier key takes it the same way, as the key itself or a
file holding it (:func:`gateway.client.auditcheck.read_key`); ``gateway audit key``
fetches it through the profile in use. Files are never overwritten without ``--force``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.audit import trust
from gateway.audit.verify import Verdict
from gateway.client import auditcheck, auditproof, auditviews, lookup
from gateway.client.auditcheck import checkpoint_size
from gateway.client.base import api_for, emit_json, json_option, profile_option, wide_option
from gateway.client.errors import AuditError, AuditKeyError, ClientError, InvocationError
from gateway.client.http import Api
from gateway.client.tables import Column, table
from gateway.keyfiles import create_secret
from gateway.tui import fail, out, reported, say
from gateway.web.report import verify_report_command

F = TypeVar("F", bound=Callable[..., Any])
TLOG = "/v1/audit/tlog/"

# The actions the gateway records (API.md lists them; a test holds this to the code).
ACTIONS = (
    "access.approve",
    "access.deny",
    "access.request",
    "admin.org.create",
    "admin.token.create",
    "admin.token.revoke",
    "artifact.expire",
    "artifact.read",
    "artifact.withdraw",
    "audit.heads",
    "auth.denied",
    "content.cut",
    "content.download",
    "grant.expire",
    "grant.revoke",
    "identity.oms_key.register",
    "identity.oms_key.revoke",
    "identity.recipient.set",
    "identity.signing_key.register",
    "identity.signing_key.revoke",
    "key.release",
    "object.delete",
    "upload.abort",
    "upload.complete",
    "upload.create",
    "upload.timeout",
    "url.issue",
)
ENTRY_COLUMNS = [
    Column("index", "#"),
    Column("time", "time", "time", keep=6),
    Column("actor_name", "actor", keep=8),
    Column("org", "org", keep=4),
    Column("action", "action"),
    Column("artifact_name", "artifact", flex=True, keep=7),
    Column("outcome", "outcome", keep=5),
    Column("actor", "actor id", "id", wide=True),
    Column("role", "role", wide=True),
    Column("artifact", "artifact id", "id", wide=True),
    Column("grant", "grant", "id", wide=True),
    Column("request_id", "request", wide=True),
]


def entries(api: Api, start: int = 0, **filters: str | None) -> Iterator[dict[str, Any]]:
    """Entries from ``start`` on (the whole log by default), page by page."""
    params = {k: v for k, v in filters.items() if v}
    yield from api.items("/v1/audit/entries", start=start, **params)


def _named(api: Api, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = lookup.Names(api).load(row.get("actor") for row in rows)
    artifacts = lookup.artifact_names(api) if any(r.get("artifact") for r in rows) else {}
    return [
        {
            **row,
            "actor_name": names(row.get("actor")),
            "artifact_name": artifacts.get(str(row.get("artifact")), row.get("artifact")),
        }
        for row in rows
    ]


@click.command("tail")
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="how many of the latest entries",
)
@click.option("--artifact", default=None, help="only entries about this artifact (an id)")
@click.option("--actor", default=None, help="only entries by this principal (a prn_ id)")
@click.option("--action", type=click.Choice(ACTIONS), default=None, help="only this action")
@click.option("--org", default=None, help="only entries of this organisation's principals")
@profile_option
@json_option
@wide_option
@reported(ClientError)
def tail(
    profile: str | None,
    as_json: bool,
    wide: bool,
    count: int,
    artifact: str | None,
    actor: str | None,
    action: str | None,
    org: str | None,
) -> None:
    """The latest entries of the audit log (those you may read)."""
    api = api_for(profile)
    if artifact is not None:
        artifact = lookup.resolve(api, artifact, "art")
    rows: list[dict[str, Any]] = []
    for item in entries(api, 0, artifact=artifact, actor=actor, action=action):
        if org is not None and item["entry"].get("org") != org:
            continue
        rows.append({**item["entry"], "index": item["index"]})
        if len(rows) > count:
            rows.pop(0)
    shown = rows if as_json else _named(api, rows)
    table(shown, ENTRY_COLUMNS, as_json=as_json, title="audit entries", wide=wide)


def _new_file(path: Path, force: bool) -> None:
    if (path.exists() or path.is_symlink()) and not force:
        raise InvocationError(f"{path} exists", hint="pass --force to replace it")


def _force_option(what: str) -> Callable[[F], F]:
    return click.option("--force", is_flag=True, help=f"replace {what} if it exists")


def _write_public(path: Path, text: str, force: bool) -> None:
    """A file others may read (a checkpoint, a verifier key); replaced only with ``force``."""
    _new_file(path, force)
    if force:
        path.unlink(missing_ok=True)
    create_secret(path, text.encode())
    path.chmod(0o644)


@click.command("checkpoint")
@click.option(
    "--save",
    "save",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="keep the checkpoint in FILE (to check later logs against with verify --since)",
)
@_force_option("the --save file")
@click.option(
    "--key", "key", default=None, help="verifier key (the key, or a file holding it): check first"
)
@profile_option
@reported(ClientError)
def checkpoint(profile: str | None, save: Path | None, force: bool, key: str | None) -> None:
    """Print (or save) the gateway's latest signed checkpoint."""
    if save is not None:
        _new_file(save, force)
    text = api_for(profile).text("/v1/audit/checkpoint")
    if key is not None:
        auditcheck.check_signature(text, auditcheck.read_key(key))
    if save is None:
        for line in text.rstrip("\n").split("\n"):
            out(line)
        return
    _write_public(save, text, force)
    say(f"checkpoint of {checkpoint_size(text)} entries saved in {save}")


@click.command("export")
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), required=True
)
@_force_option("the output file")
@profile_option
@reported(ClientError)
def export(profile: str | None, output: Path, force: bool) -> None:
    """Write the log's leaves and its checkpoint as JSON Lines, for offline verification."""
    _new_file(output, force)
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


@click.command("key")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="save the key in FILE (for --key FILE)",
)
@_force_option("the output file")
@profile_option
@reported(ClientError)
def key(profile: str | None, output: Path | None, force: bool) -> None:
    """Print (or save) the log's verifier key, as the gateway in use serves it.

    A key fetched from the gateway proves nothing about that gateway: compare it with
    the key its operator published before trusting it with `audit verify --key`.
    """
    if output is not None:
        _new_file(output, force)
    text = api_for(profile).text("/v1/audit/key").strip()
    vkey = auditcheck.read_key(text)
    if output is None:
        out(vkey)
        return
    _write_public(output, vkey + "\n", force)
    say(f"verifier key {vkey.split('+')[0]}+{vkey.split('+')[1]} saved in {output}")
    say("check it against the key the gateway's operator published before relying on it")


@click.command("verify")
@click.option(
    "--key",
    "key",
    default=None,
    envvar="GATEWAY_AUDIT_KEY",
    help="the log's verifier key (the key, or a file holding it: `gateway audit key -o FILE`); "
    "or $GATEWAY_AUDIT_KEY",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a C2SP tlog-policy (`gateway audit policy`): the log's key and the witnesses whose "
    "quorum must have cosigned the checkpoint; instead of --key",
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
    help="verify this export instead of asking the gateway (offline: no profile needed)",
)
@click.option(
    "--tiles",
    is_flag=True,
    help="read the log from its C2SP tlog-tiles alone (entry bundles: auditors only)",
)
@click.option(
    "--max-age",
    "max_age",
    default=None,
    metavar="DURATION",
    help="refuse a checkpoint the policy's quorum last cosigned longer ago than this "
    "(24h, 30m, 7d); fails when nothing dates it (--key alone)",
)
@profile_option
@json_option
@reported(ClientError)
def verify(
    profile: str | None,
    as_json: bool,
    key: str | None,
    policy_file: Path | None,
    since: tuple[Path, ...],
    export_file: Path | None,
    tiles: bool,
    max_age: str | None,
) -> None:
    """Recompute the log from its leaves and check its signed checkpoint; exit 0 only if all
    holds. The verdict says how old the checkpoint is, when its witnesses date it."""
    if (key is None) == (policy_file is None):
        raise InvocationError("give the log's verifier key (--key) or a policy (--policy)")
    if tiles and export_file is not None:
        raise InvocationError("--tiles reads the gateway's tiles; --file reads an export")
    seconds = None if max_age is None else auditcheck.parse_duration(max_age)
    trusted: trust.Policy | str = (
        auditcheck.read_policy(policy_file) if policy_file else auditcheck.read_key(str(key))
    )
    old = [path.read_text("utf-8") for path in since]
    if export_file is not None:
        verdict = auditcheck.verify_file(export_file, trusted, old, seconds)
    else:
        verdict = _verify_online(api_for(profile), trusted, old, tiles, seconds)
    if as_json:
        emit_json(verdict.as_dict())
    else:
        out(verdict.line())
    if not verdict.ok:
        fail("the audit log does not verify")


def _verify_online(
    api: Api, trusted: trust.Policy | str, old: list[str], tiles: bool, max_age: int | None
) -> Verdict:
    """The verdict on the gateway's log: its leaves listed, or read from its tiles; dated."""
    policy = isinstance(trusted, trust.Policy)
    text = api.text(TLOG + "checkpoint" if policy or tiles else "/v1/audit/checkpoint")
    try:
        cp = auditcheck.verify_checkpoint_text(text, trusted)
    except AuditKeyError as exc:
        return Verdict.failure(str(exc))
    vkey = (
        auditcheck.policy_log_key(text, trusted) if isinstance(trusted, trust.Policy) else trusted
    )
    if tiles:
        leaves, consistency = auditcheck.tiles_source(cp, lambda p: _tile(api, p))
    else:
        leaves, consistency = _listed(api, cp.size), (lambda o, n: _consistency(api, o, n))
    # the served filtered lists are checked against the leaves that streamed past
    views = auditviews.ViewCheck()
    verdict = auditcheck.verify_leaves(text, views.tap(leaves), vkey, old, consistency=consistency)
    return auditcheck.dated(views.check(api, verdict), text, trusted, max_age)


def _tile(api: Api, path: str) -> bytes:
    return api.request("GET", TLOG + path).content


def _consistency(api: Api, old: int, new: int) -> list[bytes]:
    proof = api.get("/v1/audit/proof/consistency", old=old, new=new)
    return [base64.b64decode(h) for h in proof.get("hashes", [])]


COMMANDS: list[click.Command] = [tail, checkpoint, export, verify, key, verify_report_command]
COMMANDS += auditproof.COMMANDS


def group(extra: Sequence[click.Command] = ()) -> click.Group:
    """A new ``audit`` group: the client's commands, then ``extra`` (the operator's, say)."""
    return click.Group(
        "audit", commands=[*COMMANDS, *extra], help="Read and verify the signed transparency log."
    )
