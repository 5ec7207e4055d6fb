"""Offline proofs of entries: ``gateway audit proof`` and ``gateway audit verify-proof``.

Design note (c2sp.org/tlog-proof, :mod:`gateway.audit.tlogproof`). ``proof INDEX -o FILE``
writes the ``.tlog-proof`` of entry INDEX: its RFC 6962 inclusion proof against the
checkpoint the gateway serves at ``/v1/audit/tlog/checkpoint`` (the latest its witnesses'
quorum cosigned), the cosigned note embedded, and the entry's exact leaf bytes as the
proof's ``extra`` data, so the file alone says what it proves. The entry must be one the
principal may see (a lab: its own); the proof is checked against the checkpoint's root
before it is written. ``verify-proof FILE --policy POLICY [--entry LEAF]`` needs no
gateway: the checkpoint must meet the policy (log key, witness quorum) and the inclusion
proof must bind the leaf (from ``--entry``, else the proof's ``extra``) to its root. The
``extra`` line is not authenticated by itself; it is trusted only as far as it hashes into
the proven tree.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click

from gateway.audit import merkle, note, tlogproof, trust
from gateway.client import auditcheck
from gateway.client.base import api_for, profile_option
from gateway.client.errors import AuditError, ClientError, InvocationError
from gateway.client.http import Api
from gateway.tui import fail, out, reported, say

TLOG_CHECKPOINT = "/v1/audit/tlog/checkpoint"


def _leaf(api: Api, index: int) -> bytes:
    """Entry ``index``'s leaf bytes, if the principal may see that entry."""
    page = api.get("/v1/audit/entries", start=index, limit=1)
    items = page.get("items", []) if isinstance(page, dict) else []
    if not items or items[0].get("index") != index:
        raise AuditError(f"entry {index} is not one you may see in the audit log")
    return base64.b64decode(items[0]["leaf"])


def make_proof(api: Api, index: int) -> tlogproof.TlogProof:
    """The tlog-proof of entry ``index`` in the cosigned checkpoint, checked against its root."""
    text = api.text(TLOG_CHECKPOINT)
    size = auditcheck.checkpoint_size(text)
    if index >= size:
        raise AuditError(
            f"entry {index} is not yet covered by the published checkpoint ({size} entries)",
            hint="ask again after the gateway's next publication",
        )
    leaf = _leaf(api, index)
    answer = api.get("/v1/audit/proof/inclusion", index=index, size=size)
    hashes = tuple(base64.b64decode(h) for h in answer.get("hashes", []))
    root = note.parse_checkpoint(text.partition("\n\n")[0] + "\n").root
    try:
        merkle.verify_inclusion(index, size, merkle.leaf_hash(leaf), hashes, root)
    except merkle.ProofError as exc:
        raise AuditError(
            f"the gateway's inclusion proof of entry {index} is wrong: {exc}"
        ) from None
    return tlogproof.TlogProof(index, hashes, text, extra=leaf)


@click.command("proof")
@click.argument("index", type=click.IntRange(min=0))
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the .tlog-proof file to write",
)
@click.option("--force", is_flag=True, help="replace the output file if it exists")
@profile_option
@reported(ClientError)
def proof(profile: str | None, index: int, output: Path, force: bool) -> None:
    """Write the offline proof (C2SP tlog-proof) that entry INDEX is in the cosigned log."""
    if (output.exists() or output.is_symlink()) and not force:
        raise InvocationError(f"{output} exists", hint="pass --force to replace it")
    made = make_proof(api_for(profile), index)
    tlogproof.write_proof(output, made)
    size = auditcheck.checkpoint_size(made.checkpoint)
    say(f"proof of entry {index} in the checkpoint of {size} entries written to {output}")


def _describe(leaf: bytes) -> str:
    try:
        entry = json.loads(leaf)
    except ValueError:
        return "an entry"
    if not isinstance(entry, dict):
        return "an entry"
    return f"{entry.get('action', 'an entry')} by {entry.get('actor', 'someone')}"


@click.command("verify-proof")
@click.argument("proof_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the C2SP tlog-policy to verify under (`gateway audit policy`)",
)
@click.option(
    "--entry",
    "entry_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="the entry's exact leaf bytes (default: the entry the proof carries)",
)
@reported(ClientError)
def verify_proof(proof_file: Path, policy_file: Path, entry_file: Path | None) -> None:
    """Check a .tlog-proof offline: its checkpoint meets the policy and holds the entry."""
    policy = auditcheck.read_policy(policy_file)
    try:
        parsed = tlogproof.read_proof(proof_file)
    except (OSError, tlogproof.MalformedProof) as exc:
        raise AuditError(f"{proof_file} is not a tlog-proof: {exc}") from None
    leaf = entry_file.read_bytes() if entry_file is not None else parsed.extra
    if leaf is None:
        raise InvocationError(
            f"{proof_file} carries no entry", hint="give the entry's leaf bytes with --entry"
        )
    try:
        verified = tlogproof.verify_proof(parsed, policy, leaf=leaf)
    except trust.CheckpointRefused as exc:
        out(f"FAILED: {exc}")
        fail("the proof does not verify")
    cp = verified.checkpoint
    witnesses = sorted({name.split("+")[0] for name in cp.cosignatures})
    cosigned = f"cosigned by {', '.join(witnesses)}" if witnesses else "with no cosignature"
    out(
        f"ok: entry {parsed.index} ({_describe(leaf)}) is in the log {cp.checkpoint.origin} "
        f"of {cp.checkpoint.size} entries, {cosigned}"
    )


COMMANDS: list[click.Command] = [proof, verify_proof]
