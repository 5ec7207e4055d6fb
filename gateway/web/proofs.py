"""What the pages can prove about the log, each behind one function the next log version fills.

Today's log proves that an entry is in the tree the gateway's signed checkpoint commits to
(an RFC 9162 inclusion proof, written as a C2SP ``.tlog-proof``), and that the live log
extends every published checkpoint (consistency proofs). It does not yet prove that a
lab was shown *every* entry about its artifacts, nor carry witness cosignatures:

- :func:`checkpoint_policy` is the tlog-policy pages verify checkpoints under: the log's
  own key and quorum ``none`` today; with witnesses, their keys and the quorum.
- :func:`cosigners` names the witnesses that cosigned a verified checkpoint (none today).
- :func:`lab_view_complete` says whether a lab's view of its entries is proven complete:
  never today (that needs per-organisation chains), and the page says what *is* proven.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from gateway.audit import merkle, tlogproof, trust
from gateway.audit.store import Entry
from gateway.runtime import Runtime
from gateway.services import anchor, auditlog


@dataclass(frozen=True)
class Completeness:
    """Whether a view of the log is proven complete, and what a person is told about it."""

    proven: bool
    explanation: str


@dataclass(frozen=True)
class Proven:
    """The outcome of checking one entry's inclusion proof against a verified checkpoint."""

    index: int
    size: int
    ok: bool
    message: str
    proof: bytes  # the .tlog-proof file


@dataclass(frozen=True)
class Latest:
    """The log's current signed checkpoint (the note, verbatim) and what verifying it found."""

    signed: str
    verified: trust.VerifiedCheckpoint

    @property
    def size(self) -> int:
        return self.verified.checkpoint.size

    @property
    def root(self) -> str:
        return b64(self.verified.checkpoint.root)


@dataclass(frozen=True)
class Anchor:
    """A published checkpoint and whether the live log is proven to extend it."""

    name: str
    size: int
    root: str
    ok: bool
    message: str


def checkpoint_policy(rt: Runtime) -> trust.Policy:
    """The policy checkpoints are verified under: the log's key; no witness quorum yet."""
    return trust.parse_policy(f"log {rt.audit_signer.verifier_key}\nquorum none\n")


def latest_checkpoint(rt: Runtime) -> Latest:
    """The log's current signed checkpoint, verified under :func:`checkpoint_policy`."""
    signed = auditlog.checkpoint(rt)
    return Latest(signed, trust.verify_checkpoint(signed, checkpoint_policy(rt)))


def cosigners(latest: Latest) -> list[str]:
    """The witnesses whose cosignatures on ``latest`` the policy counted."""
    return sorted(latest.verified.cosignatures)


def lab_view_complete(rt: Runtime, org: str) -> Completeness:
    """Whether ``org``'s view of the entries about its artifacts is proven complete."""
    return Completeness(
        False,
        "each entry shown is proven to be in the signed log; that none about your artifacts "
        "is missing from this view is not yet provable (per-organisation chains)",
    )


def proof_of(rt: Runtime, index: int, latest: Latest) -> tlogproof.TlogProof:
    """The ``.tlog-proof`` of entry ``index`` in the checkpoint ``latest``."""
    hashes = auditlog.inclusion(rt, index, latest.size).hashes
    return tlogproof.TlogProof(index, tuple(hashes), latest.signed)


def prove(rt: Runtime, entry: Entry, latest: Latest) -> Proven:
    """Entry ``entry``'s inclusion proof in ``latest``, checked here as an auditor would."""
    size = latest.size
    if entry.index >= size:
        return Proven(entry.index, size, False, "not yet covered by the latest checkpoint", b"")
    proof = proof_of(rt, entry.index, latest)
    try:
        tlogproof.verify_proof(proof, checkpoint_policy(rt), leaf=entry.leaf)
    except trust.CheckpointRefused as exc:
        return Proven(entry.index, size, False, str(exc), b"")
    return Proven(
        entry.index,
        size,
        True,
        f"Entry {entry.index} is in the log of {size} entries whose checkpoint is signed "
        f"by {latest.verified.log.origin}",
        tlogproof.format_proof(proof),
    )


def anchors(rt: Runtime, latest: Latest, newest: int) -> list[Anchor]:
    """The ``newest`` published checkpoints, newest first, each proven extended by the log."""
    archive = anchor.archive(rt)
    found = anchor.published(archive.list_names())[-newest:]
    return [_anchor(rt, latest, archive.get(name), name) for _size, _when, name in reversed(found)]


def _anchor(rt: Runtime, latest: Latest, data: bytes, name: str) -> Anchor:
    try:
        old = trust.verify_checkpoint(data, checkpoint_policy(rt)).checkpoint
    except (trust.CheckpointRefused, UnicodeDecodeError) as exc:
        return Anchor(name, 0, "", False, f"does not verify: {exc}")
    new = latest.verified.checkpoint
    root = b64(old.root)
    if old.size > new.size:
        return Anchor(name, old.size, root, False, "larger than the live log: the log shrank")
    proof = auditlog.consistency(rt, old.size, new.size).hashes
    try:
        merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    except merkle.ProofError as exc:
        return Anchor(name, old.size, root, False, f"not extended by the live log: {exc}")
    return Anchor(
        name, old.size, root, True, f"the log of {new.size} entries extends it (consistency proven)"
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
