"""``gateway audit mine``: prove that the entries the gateway shows an organisation are all of them.

Design note. The check is :func:`gateway.audit.views.check_org_view`'s; this module fetches
what it needs and trusts only what the user supplies: the checkpoint must verify under the
log's key (``--key``) or a C2SP tlog-policy (``--policy``, :mod:`gateway.audit.trust`); an
earlier checkpoint (``--since``) must verify the same way and the gateway's consistency proof
must show the log extends it. The entries come in one listing with their inclusion proofs
(``GET /v1/audit/entries?concerning=ORG&with_proofs=1&size=N``), from the start of the log,
or with ``--since`` from the newest heads entry below the earlier checkpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from gateway.audit import merkle, note, trust
from gateway.audit.leaf import HEADS_ACTION
from gateway.audit.note import Checkpoint
from gateway.audit.views import Served, check_org_view
from gateway.client import auditcheck
from gateway.client.base import api_for, emit_json, json_option, profile_option
from gateway.client.errors import AuditError, AuditKeyError, ClientError, InvocationError
from gateway.client.http import Api
from gateway.tui import fail, reported

ENTRIES = "/v1/audit/entries"


class Trusted:
    """How a checkpoint is trusted: by the log's verifier key, or by a tlog-policy."""

    def __init__(self, key: str | None, policy: Path | None) -> None:
        if (key is None) == (policy is None):
            raise InvocationError(
                "give the log's verifier key (--key) or a policy (--policy), not both"
            )
        self.vkey = auditcheck.read_key(key) if key is not None else None
        self.policy = None
        if policy is not None:
            try:
                self.policy = trust.parse_policy(policy.read_bytes())
            except trust.PolicyError as exc:
                raise InvocationError(f"{policy}: not a tlog policy: {exc}") from None

    def open(self, text: str, what: str) -> Checkpoint:
        """``text`` as a checkpoint, if it verifies; else an :class:`AuditKeyError` naming ``what``."""
        if self.vkey is not None:
            try:
                return note.open_checkpoint(text, [self.vkey])
            except note.NoteError as exc:
                raise AuditKeyError(f"{what} does not verify under the given key: {exc}") from None
        assert self.policy is not None
        try:
            return trust.verify_checkpoint(text, self.policy).checkpoint
        except trust.CheckpointRefused as exc:
            raise AuditKeyError(f"{what} does not meet the policy: {exc}") from None


def served(api: Api, org: str, size: int, start: int = 0, **filters: str) -> Iterator[Served]:
    """The entries concerning ``org`` below ``size`` from ``start``, each with its proof."""
    for item in api.items(
        ENTRIES, concerning=org, with_proofs=1, size=size, start=start, **filters
    ):
        try:
            yield Served(
                int(item["index"]),
                base64.b64decode(item["leaf"], validate=True),
                item.get("entry"),
                [base64.b64decode(h, validate=True) for h in item.get("proof", [])],
            )
        except (KeyError, TypeError, ValueError):
            raise AuditError(f"the gateway listed an entry that is not one: {item!r:.80}") from None


def extends(api: Api, old_size: int, old_root: bytes, new: Checkpoint) -> None:
    """Check the gateway's consistency proof that ``new`` extends the tree of ``old_size``
    entries and ``old_root``; :class:`merkle.ProofError` or ValueError if it does not.

    Every tree extends the empty one (a proof from size 0 does not exist), and a tree of
    the same size extends only itself.
    """
    if old_size == 0 or old_size == new.size:
        if old_size == new.size and old_root != new.root:
            raise merkle.ProofError("another root at the same size")
        return
    proof = api.get("/v1/audit/proof/consistency", old=old_size, new=new.size)
    hashes = [base64.b64decode(h, validate=True) for h in proof.get("hashes", [])]
    merkle.verify_consistency(old_size, new.size, hashes, old_root, new.root)


def _extends(api: Api, old: Checkpoint, new: Checkpoint) -> None:
    """The gateway's consistency proof must show ``new`` extends ``old``."""
    if old.origin != new.origin:
        raise AuditError("the saved checkpoint is of another log")
    if old.size > new.size:
        raise AuditError(f"the log shrank: the saved checkpoint has {old.size} entries")
    try:
        extends(api, old.size, old.root, new)
    except (merkle.ProofError, TypeError, ValueError) as exc:
        raise AuditError(f"the log does not extend the saved checkpoint: {exc}") from None


def _since_start(api: Api, org: str, cp: Checkpoint, since: Checkpoint) -> int:
    """Where to start reading: the newest heads entry naming ``org`` below ``since``'s size."""
    heads = [s.index for s in served(api, org, cp.size, action=HEADS_ACTION)]
    earlier = [i for i in heads if i < since.size]
    return max(earlier, default=0)


@click.command("mine")
@click.option(
    "--key",
    "key",
    default=None,
    envvar="GATEWAY_AUDIT_KEY",
    help="the log's verifier key (vkey string, or a file holding it)",
)
@click.option(
    "--policy",
    "policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a tlog-policy file: the checkpoint must be signed and cosigned as it says",
)
@click.option(
    "--since",
    "since",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a checkpoint saved earlier: check from its heads entry on, and that the log extends it",
)
@click.option("--org", default=None, help="whose view to check (auditors); default: your own")
@profile_option
@json_option
@reported(ClientError)
def mine(
    profile: str | None,
    as_json: bool,
    key: str | None,
    policy: Path | None,
    since: Path | None,
    org: str | None,
) -> None:
    """Prove that the entries about your organisation the gateway shows you are all of them."""
    source = click.get_current_context().get_parameter_source("key")
    if policy is not None and source is click.core.ParameterSource.ENVIRONMENT:
        key = None  # a policy given on the command line is what the user asked to trust
    trusted = Trusted(key, policy)
    api = api_for(profile)
    who = org or str(api.get("/v1/me").get("org"))
    cp = trusted.open(api.text("/v1/audit/checkpoint"), "the gateway's checkpoint")
    start, since_size = 0, None
    if since is not None:
        old = trusted.open(since.read_text("utf-8"), f"the saved checkpoint {since}")
        _extends(api, old, cp)
        start, since_size = _since_start(api, who, cp, old), old.size
    verdict = check_org_view(who, cp, served(api, who, cp.size, start), since=since_size)
    if as_json:
        report: dict[str, Any] = {**verdict.as_dict(), "org": who, "size": cp.size}
        emit_json(report)
    else:
        click.echo(verdict.line())
    if not verdict.ok:
        fail(f"the view of {who} is not proven complete")
