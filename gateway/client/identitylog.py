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
from pathlib import Path
from typing import Any

import click

from gateway.audit import merkle, note
from gateway.audit.leaf import LeafError, decode_leaf
from gateway.client import auditcheck, auditmine, trust
from gateway.client.errors import AuditError, ClientError
from gateway.client.http import Api
from gateway.client.profiles import config_dir
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
    being the latest. A lab reads these entries for every principal with a request pending
    on one of its lab-custody artifacts.

    The log proves each entry served is in it, not that none was left out, and a gateway
    that withholds the newest shows an older recipient the evaluator made, retired perhaps
    because it was compromised. So: the checkpoint must extend the largest this machine
    verified (:func:`_fresh`), the principal's entries must chain ``old`` to ``new`` with no
    gap, and the latest must be at an index no lower than the latest seen here before
    (remembered in :func:`seen_path`); else :class:`AuditError`. A gateway can still
    withhold a registration this machine has never seen in a checkpoint it never verified.
    """
    cp, pinned = _checkpoint(api)
    seen = trust.load_known(seen_path())
    mine = seen.setdefault(api.url, {})
    _fresh(api, cp, mine)
    trust.save_known(seen_path(), seen)
    theirs = [
        (_recorded(index, entry), entry)
        for index, entry in _proven(api, cp, actor=principal)
        if entry["actor"] == principal and entry["details"].get("principal") == principal
    ]
    _continuous(principal, [r for r, _ in theirs])
    # by the principal, whatever name it carried then: a rename is the pins' business (a
    # known id under another name needs consent), not a withheld registration
    found = [r for r, e in theirs if e["org"] == org]
    latest = found[-1].index if found else -1
    highest = mine.setdefault(LATEST, {}).get(principal, -1)
    if latest < highest:
        raise AuditError(
            f"the gateway proves entry {latest if found else 'none'} as the latest recipient "
            f"registration of {name} of {org} ({principal}), but this machine has seen entry "
            f"{highest} as the latest: a newer registration is withheld"
        )
    mine[LATEST][principal] = latest
    trust.save_known(seen_path(), seen)
    return (found[-1] if found else None), cp, pinned


LATEST = "latest"
"""The seen-log file's record, per gateway, of the highest entry index each evaluator's
latest registration was proven at: ``{gateway: {"latest": {principal: index}}}``."""

CHECKPOINT = "checkpoint"
"""The seen-log file's record of the largest checkpoint this machine verified of a
gateway's log: ``{gateway: {"checkpoint": {"origin", "size", "root"}}}`` (root in base64)."""


def seen_path() -> Path:
    """``<config dir>/seen_log.json``: what this machine has verified of each gateway's log."""
    return config_dir() / "seen_log.json"


def _fresh(api: Api, cp: note.Checkpoint, mine: dict[str, Any]) -> None:
    """Refuse ``cp`` unless it extends the largest checkpoint this machine verified of
    ``api``'s log (a consistency proof from it); ``cp`` is remembered when it is larger.

    A gateway that serves an older tree, or a fork of it, could leave out an evaluator's
    newest registration and show a retired (perhaps compromised) recipient as the latest.
    """
    saved = mine.get(CHECKPOINT)
    if isinstance(saved, dict) and saved.get("size") != 0:  # an empty tree proves nothing
        try:
            origin, size = str(saved["origin"]), int(saved["size"])
            root = base64.b64decode(saved["root"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise AuditError(
                f"{seen_path()}: the saved checkpoint is unreadable", hint=_reset()
            ) from None
        if origin != cp.origin:
            raise AuditError(
                f"the gateway's log is {cp.origin}, not {origin} as verified before", hint=_reset()
            )
        if cp.size < size:
            raise AuditError(
                f"the gateway's checkpoint has {cp.size} entries, but this machine verified one "
                f"of {size}: the log was rolled back",
                hint=_reset(),
            )
        if cp.size == size and cp.root != root:
            raise AuditError(
                f"the gateway's checkpoint of {cp.size} entries has another root than the one "
                "this machine verified: the log was forked",
                hint=_reset(),
            )
        if cp.size == size:
            return
        try:
            auditmine.extends(api, size, root, cp)
        except (merkle.ProofError, TypeError, ValueError) as exc:
            raise AuditError(
                f"the gateway's checkpoint of {cp.size} entries does not extend the one of "
                f"{size} this machine verified: {exc}",
                hint=_reset(),
            ) from None
    if cp.size == 0:
        return  # nothing to remember: every later tree extends the empty one
    root_text = base64.b64encode(cp.root).decode()
    mine[CHECKPOINT] = {"origin": cp.origin, "size": cp.size, "root": root_text}


def _reset() -> str:
    return (
        "ask the gateway's operator and an auditor (`gateway audit verify --policy ...`) "
        "whether its log was reset or forked; only once they confirm that a new log is honest, "
        f"remove this gateway's entry from {seen_path()}"
    )


def _continuous(principal: str, found: list[Recorded]) -> None:
    """Refuse registrations by ``principal`` where one's ``old`` is not the ``new`` of the
    one before it: an entry between them is left out. The first's ``old`` may be anything:
    a recipient registered before the log recorded registrations has no entry, and an
    entry withheld before the first shown changes nothing about which one is the latest."""
    for before, r in zip(found, found[1:], strict=False):
        if r.old != before.new:
            raise AuditError(
                f"entry {r.index} replaces {principal}'s recipient {r.old or 'none'}, but "
                f"entry {before.index} sets {before.new or 'none'}: a registration between "
                "them is withheld"
            )


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
