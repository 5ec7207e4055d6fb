"""Heads entries: each org pinned by its own, and logs with the older shared heads entry still read."""

from __future__ import annotations

import json
from typing import Any

from gateway.audit import leaf as leafmod
from gateway.audit import merkle, note, verify
from gateway.audit.views import Served, check_org_view
from tests.audit import reference
from tests.audit.conftest import ORIGIN, T0


def _leaf(index: int, org: str, subject: str | None, prev: dict[str, Any], **kw: Any) -> bytes:
    fields: dict[str, Any] = {
        "time": T0,
        "actor": "prn_1",
        "role": "lab",
        "action": "upload.create",
        "artifact": None,
        "grant": None,
        "outcome": "ok",
        "request_id": None,
        "ip": None,
        "details": {},
        **kw,
    }
    return leafmod.encode_leaf(index=index, org=org, subject_org=subject, prev=prev, **fields)


def _heads(index: int, subject: str | None, prev: dict[str, Any]) -> bytes:
    return _leaf(
        index, "operator", subject, prev, actor="cli", role="admin", action=leafmod.HEADS_ACTION
    )


def _signed(leaves: list[bytes], signer: note.Signer) -> tuple[note.Checkpoint, str]:
    rng = merkle.CompactRange()
    for x in leaves:
        rng.append(merkle.leaf_hash(x))
    cp = note.Checkpoint(ORIGIN, rng.size, rng.root())
    return cp, note.sign_checkpoint(cp, signer)


def _view(org: str, leaves: list[bytes]) -> list[Served]:
    return [
        Served(i, x, json.loads(x), reference.path(i, leaves))
        for i, x in enumerate(leaves)
        if org in leafmod.concerns(json.loads(x))
    ]


def _shared_log() -> list[bytes]:
    """A log as written before per-org heads entries: one shared heads entry at 3."""
    return [
        _leaf(0, "lab-a", "lab-a", {"lab-a": None}),
        _leaf(1, "lab-b", "lab-b", {"lab-b": None}),
        _leaf(2, "agency-a", "lab-a", {"agency-a": None, "lab-a": 0}, role="evaluator"),
        _heads(3, None, {"agency-a": 2, "lab-a": 2, "lab-b": 1}),
        _leaf(4, "lab-a", "lab-a", {"lab-a": 3}),
    ]


def test_a_log_with_shared_heads_entries_still_verifies(signer: note.Signer) -> None:
    leaves = _shared_log()
    _, text = _signed(leaves, signer)
    v = verify.verify_log(leaves, text, signer.verifier_key)
    assert v.ok, v.message
    # ... and new per-org runs may follow it in the same log.
    leaves += [
        _heads(5, "agency-a", {"agency-a": 3}),
        _heads(6, "lab-a", {"lab-a": 4}),
        _heads(7, "lab-b", {"lab-b": 3}),
    ]
    cp, text = _signed(leaves, signer)
    assert verify.verify_log(leaves, text, signer.verifier_key).ok
    v = check_org_view("lab-b", cp, _view("lab-b", leaves))
    assert v.ok and v.message == "ok: 1 entries about lab-b, chain complete to index 7", v.message


def test_an_org_proves_its_view_through_a_shared_heads_entry(signer: note.Signer) -> None:
    leaves = _shared_log()
    cp, _ = _signed(leaves, signer)
    mine = _view("lab-a", leaves)
    assert [s.index for s in mine] == [0, 2, 3, 4]
    v = check_org_view("lab-a", cp, mine)
    assert v.ok and v.complete_to == 3 and v.entries == 3, v.message
    hidden = [s for s in mine if s.index != 2]
    v = check_org_view("lab-a", cp, hidden)
    assert (v.ok, v.bad_index) == (False, 2) and "entry 2 is missing" in v.message, v.message


def test_a_shared_heads_entry_that_leaves_an_org_out_is_refused(signer: note.Signer) -> None:
    leaves = _shared_log()
    leaves[3] = _heads(3, None, {"agency-a": 2, "lab-a": 2})
    _, text = _signed(leaves, signer)
    v = verify.verify_log(leaves, text, signer.verifier_key)
    assert (v.ok, v.first_bad_index) == (False, 3) and "leaves out lab-b" in v.message, v.message


def _run_log() -> list[bytes]:
    return [
        _leaf(0, "lab-a", "lab-a", {"lab-a": None}),
        _leaf(1, "lab-b", "lab-b", {"lab-b": None}),
        _heads(2, "lab-a", {"lab-a": 0}),
        _heads(3, "lab-b", {"lab-b": 1}),
    ]


def test_a_run_must_pin_every_org_even_at_the_end_of_the_log(signer: note.Signer) -> None:
    whole = _run_log()
    _, text = _signed(whole, signer)
    assert verify.verify_log(whole, text, signer.verifier_key).ok
    short = whole[:3]  # lab-b's heads entry never written
    _, text = _signed(short, signer)
    v = verify.verify_log(short, text, signer.verifier_key)
    assert (v.ok, v.first_bad_index) == (False, 3) and "leave out lab-b" in v.message, v.message
    # A run out of org name order is two runs, each leaving an org out.
    swapped = [*whole[:2], _heads(2, "lab-b", {"lab-b": 1}), _heads(3, "lab-a", {"lab-a": 0})]
    _, text = _signed(swapped, signer)
    v = verify.verify_log(swapped, text, signer.verifier_key)
    assert (v.ok, v.first_bad_index) == (False, 2) and "leave out lab-a" in v.message, v.message


def test_a_heads_entry_for_an_org_without_entries_is_refused(signer: note.Signer) -> None:
    leaves = [*_run_log(), _heads(4, "lab-c", {"lab-c": None})]
    _, text = _signed(leaves, signer)
    v = verify.verify_log(leaves, text, signer.verifier_key)
    assert (v.ok, v.first_bad_index) == (False, 4) and "which has no entries" in v.message
