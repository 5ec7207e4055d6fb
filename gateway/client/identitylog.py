"""What the audit log says an evaluator registered: the recipients ``gateway whoami`` shows.

Design note. Released keys go to the recipient the gateway holds for an evaluator, and the
gateway could hold another than the one the evaluator registered (a stolen token's, or one
written into the database). Every registration is an ``identity.recipient.set`` entry
naming the principal, the old and the new recipient; :func:`recorded` reads those about
this evaluator, each with its inclusion proof in the checkpoint, which it verifies under
the log's key (``GATEWAY_AUDIT_KEY`` when set, else the key the gateway serves, which proves
only that the entries are in the gateway's own log). ``whoami`` shows them, and warns when
the recipient in force is not the last one the log records.

No challenge proves possession of a recipient: an age recipient cannot sign, and whoever
holds an evaluator's token can register a recipient of their own and decrypt any
challenge to it, and an evaluator that registers a recipient it does not hold hands
released keys to that recipient's holder, as it could by forwarding them. What a challenge cannot stop, the log shows: every registration is an
entry the evaluator (and its agency, and the auditors) can read and prove, and one the
evaluator did not make is seen here.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import click

from gateway.audit import merkle, note
from gateway.audit.leaf import LeafError, decode_leaf
from gateway.client import auditcheck
from gateway.client.errors import AuditError, ClientError
from gateway.client.http import Api
from gateway.tui import shown

ACTION = "identity.recipient.set"


@dataclass(frozen=True)
class Recorded:
    """One registration on record: its entry, when, the recipient before and after."""

    index: int
    time: str
    old: str | None
    new: str


def _checkpoint(api: Api) -> tuple[note.Checkpoint, bool]:
    pinned = os.environ.get("GATEWAY_AUDIT_KEY")
    vkey = auditcheck.read_key(pinned) if pinned else api.text("/v1/audit/key").strip()
    return auditcheck.check_signature(api.text("/v1/audit/checkpoint"), vkey), bool(pinned)


def recorded(api: Api, me: dict[str, Any]) -> tuple[list[Recorded], note.Checkpoint, bool]:
    """This evaluator's recipient registrations on record, each proven in the checkpoint."""
    cp, pinned = _checkpoint(api)
    found: list[Recorded] = []
    items = api.items(
        "/v1/audit/entries", concerning=me["org"], action=ACTION, with_proofs=1, size=cp.size
    )
    for item in items:
        leaf = base64.b64decode(item["leaf"])
        proof = [base64.b64decode(h) for h in item.get("proof", [])]
        try:
            merkle.verify_inclusion(item["index"], cp.size, merkle.leaf_hash(leaf), proof, cp.root)
            entry = decode_leaf(leaf)
        except (merkle.ProofError, LeafError, ValueError) as exc:
            raise AuditError(f"entry {item['index']} is not in the log: {exc}") from None
        details = entry["details"]
        if (
            entry["action"] == ACTION
            and entry["org"] == me["org"]
            and details.get("name") == me["name"]
        ):
            found.append(
                Recorded(entry["index"], entry["time"], details.get("old"), details["new"])
            )
    return found, cp, pinned


def history(api: Api) -> list[dict[str, Any]] | None:
    """Every recipient registration the log records for the caller (an evaluator), oldest first.

    Each is ``{"index", "time", "recipient", "replaced"}``, proven in the checkpoint. When the
    recipient the gateway holds is not the last one on record, a warning says so on stderr:
    released keys would go to a recipient this evaluator did not register. None, with a
    warning, when the gateway's log proves no history (a gateway that records none, or
    answers that do not fit together); with ``GATEWAY_AUDIT_KEY`` set, that is an error.
    """
    me = api.get("/v1/me")
    try:
        found, cp, _ = recorded(api, me)
    except (ClientError, KeyError, TypeError, ValueError) as exc:
        if os.environ.get("GATEWAY_AUDIT_KEY"):
            raise
        warn(f"the audit log proves no recipients registered by you: {_reason(exc)}")
        return None
    last = found[-1].new if found else None
    if me.get("recipient") != last:
        warn(
            f"the gateway holds recipient {me.get('recipient') or 'none'}, but the last one "
            f"the audit log records you registering is {last or 'none'} (log size {cp.size})"
        )
    return [
        {"index": r.index, "time": r.time, "recipient": r.new, "replaced": r.old} for r in found
    ]


def _reason(exc: Exception) -> str:
    return exc.detail if isinstance(exc, ClientError) else f"a malformed answer ({exc})"


def warn(message: str) -> None:
    """``gateway: warning: MESSAGE`` on stderr."""
    click.echo(f"gateway: warning: {shown(message)}", err=True)
