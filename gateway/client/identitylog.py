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


def _proven(api: Api, cp: note.Checkpoint, **filters: str) -> list[tuple[int, dict[str, Any]]]:
    """The ``identity.recipient.set`` entries listed under ``filters``, each proven in ``cp``
    (:class:`AuditError` if one is not), as (the index it is proven at, the entry)."""
    found: list[tuple[int, dict[str, Any]]] = []
    items = api.items("/v1/audit/entries", action=ACTION, with_proofs=1, size=cp.size, **filters)
    for item in items:
        leaf = base64.b64decode(item["leaf"])
        proof = [base64.b64decode(h) for h in item.get("proof", [])]
        index = int(item["index"])
        try:
            merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(leaf), proof, cp.root)
            entry = decode_leaf(leaf)
        except (merkle.ProofError, LeafError, ValueError) as exc:
            raise AuditError(f"entry {index} is not in the log: {exc}") from None
        if entry["action"] == ACTION:
            found.append((index, entry))
    return sorted(found, key=lambda pair: pair[0])


def _recorded(index: int, entry: dict[str, Any]) -> Recorded:
    details = entry["details"]
    return Recorded(index, entry["time"], details.get("old"), details["new"])


def recorded(api: Api, me: dict[str, Any]) -> tuple[list[Recorded], note.Checkpoint, bool]:
    """This evaluator's recipient registrations on record, each proven in the checkpoint."""
    cp, pinned = _checkpoint(api)
    found = [
        _recorded(index, entry)
        for index, entry in _proven(api, cp, concerning=me["org"])
        if entry["org"] == me["org"] and entry["details"].get("name") == me["name"]
    ]
    return found, cp, pinned


def registered_by(
    api: Api, principal: str, org: str, name: str
) -> tuple[Recorded | None, note.Checkpoint, bool]:
    """The latest recipient registration on record by ``principal`` (``name`` of ``org``).

    What a lab-custody approval checks the recipient it wraps for against: entries whose
    actor is the principal and which name it, ``name`` and ``org``, each proven in the
    checkpoint (verified as :func:`recorded`'s), the one proven at the highest index
    being the latest. A lab reads these entries for every principal who asked it for
    access. The log proves each entry served is in it, not that none was left out: a
    gateway that withholds the newest can only show an older one the evaluator made.
    """
    cp, pinned = _checkpoint(api)
    found = [
        _recorded(index, entry)
        for index, entry in _proven(api, cp, actor=principal)
        if entry["actor"] == principal
        and entry["org"] == org
        and entry["details"].get("principal") == principal
        and entry["details"].get("name") == name
    ]
    return (found[-1] if found else None), cp, pinned


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
