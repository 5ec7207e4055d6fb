"""The log's checkpoints: signed only as extensions of the last one, published once cosigned.

Design note (c2sp.org/tlog-witness for the exchange with witnesses, c2sp.org/tlog-policy for
the quorum, RFC 9162 §2.1.4 for consistency):

- **Never two inconsistent checkpoints.** The last checkpoint the gateway signed is one row
  of ``audit_checkpoints`` (kind ``signed``: size, root, note). :func:`sign_latest` locks it,
  proves with the stored tree that the log's head extends it (a consistency proof from its
  size, verified against its root), signs the head, and replaces the row by compare-and-set
  on the old size and root, all in one transaction. Of two instances racing, one signs and
  the other reuses its checkpoint; a log whose history was changed under the row is refused
  (:class:`Inconsistent`), and nothing is signed.
- **Cosigned before published.** :func:`cosign` submits the signed checkpoint, with its
  consistency proof from the size each witness holds, to every witness in parallel
  (:func:`gateway.audit.witness.cosign`, which follows a 409 to the witness's size), verifies
  what they return, and checks the result with the gateway's own policy
  (:func:`gateway.audit.trust.verify_checkpoint`). Only a note that meets the quorum comes
  back; otherwise publication waits, and the next sweep tries again.
- **Served.** :func:`record_published` keeps the cosigned note (kind ``cosigned``), replaced
  only by a larger tree (or the same tree with more cosignatures); :func:`served` is what
  ``GET /v1/audit/checkpoint`` and the tiles' ``checkpoint`` answer: that note, or, when no
  witness is configured, the newest signed checkpoint, as before witnesses existed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Executable,
    LargeBinary,
    String,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.audit import merkle, note, store, trust
from gateway.audit import witness as tlog_witness
from gateway.audit.leaf import utc_naive
from gateway.db import Base, cas_update
from gateway.errors import GatewayError, NotFound
from gateway.runtime import Runtime
from gateway.services.witnesses import LogWitnesses, for_gateway

log = logging.getLogger("gateway.audit")

SIGNED = "signed"
COSIGNED = "cosigned"


class LogCheckpoint(Base):
    """The last checkpoint the gateway signed (``signed``) and the last it published (``cosigned``)."""

    __tablename__ = "audit_checkpoints"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Inconsistent(GatewayError):
    """The log's head does not extend the last checkpoint signed: its history was changed."""

    slug, title = "audit-inconsistent", "Audit log inconsistent with its last checkpoint"


class NotPublished(NotFound):
    """No checkpoint has been cosigned by the witnesses' quorum yet."""

    slug, title = "checkpoint-not-published", "No cosigned checkpoint yet"


@dataclass(frozen=True)
class Signed:
    """A checkpoint the gateway signed: the checkpoint and its signed note."""

    checkpoint: note.Checkpoint
    note: str


@dataclass(frozen=True)
class Cosigning:
    """What the witnesses did with one checkpoint: the note with every verified cosignature,
    whether it met the quorum (``verified``), and why each witness that failed did."""

    note: str
    verified: trust.VerifiedCheckpoint | None
    refused: str
    failures: dict[str, str]


def log_witnesses(rt: Runtime) -> LogWitnesses:
    """The gateway's policy and witnesses (ValueError: the settings are wrong)."""
    a = rt.config.audit
    return for_gateway(
        log_vkey=rt.audit_signer.verifier_key,
        witnesses=a.witnesses,
        policy_file=a.policy_file,
        quorum=a.quorum,
        timeout=a.witness_timeout_seconds,
        deadline=a.witness_deadline_seconds,
    )


def _row(session: Session, kind: str, *, lock: bool = False) -> LogCheckpoint | None:
    stmt = select(LogCheckpoint).where(LogCheckpoint.kind == kind)
    return session.scalars(stmt.with_for_update() if lock else stmt).one_or_none()


def _check_extends(session: Session, last: LogCheckpoint, cp: note.Checkpoint) -> None:
    """Raise :class:`Inconsistent` unless ``cp`` (the head) extends the signed ``last``."""
    if cp.size < last.size:
        raise Inconsistent(
            f"the audit log has {cp.size} entries, fewer than the {last.size} of the "
            "checkpoint the gateway last signed: it will not sign a shrunk log"
        )
    try:
        if last.size == cp.size:
            if not hmac.compare_digest(last.root, cp.root):
                raise merkle.ProofError("same size, another root")
        elif last.size > 0:
            proof = store.consistency_proof(session, last.size, cp.size)
            merkle.verify_consistency(last.size, cp.size, proof, last.root, cp.root)
    except (merkle.ProofError, store.LogError) as exc:
        raise Inconsistent(
            f"the audit log no longer extends the checkpoint of size {last.size} the gateway "
            f"signed ({exc}): its history was changed, and no checkpoint is signed over it"
        ) from None


def _insert_once(session: Session, row: dict[str, object]) -> bool:
    """Insert ``row`` unless its key exists; whether it was inserted."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        stmt: Executable = sqlite.insert(LogCheckpoint).values(row).on_conflict_do_nothing()
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt = postgresql.insert(LogCheckpoint).values(row).on_conflict_do_nothing()
    else:
        stmt = insert(LogCheckpoint).values(row)
    result = session.execute(stmt)
    assert isinstance(result, CursorResult)  # an INSERT always answers with a cursor
    return int(result.rowcount) == 1


def _store(
    session: Session, kind: str, last: LogCheckpoint | None, signed: Signed, now: datetime
) -> bool:
    """Compare-and-set the ``kind`` row from ``last`` to ``signed``; whether it was set."""
    cp = signed.checkpoint
    values = {"size": cp.size, "root": cp.root, "note": signed.note, "updated_at": now}
    if last is None:  # the first: inserted unless another transaction inserted it first
        return _insert_once(session, {"kind": kind, **values})
    stmt = (
        update(LogCheckpoint)
        .where(
            LogCheckpoint.kind == kind,
            LogCheckpoint.size == last.size,
            LogCheckpoint.root == last.root,
        )
        .values(values)
    )
    return cas_update(session, stmt) == 1


def sign_latest(rt: Runtime) -> Signed:
    """The log's head, signed if it was not yet: never over a history the last one does not extend."""
    origin = rt.config.audit.origin
    for _attempt in range(3):
        with rt.db.session() as session:
            last = _row(session, SIGNED, lock=True)
            cp = store.checkpoint(session, origin)
            if last is not None:
                _check_extends(session, last, cp)
                if last.size == cp.size:
                    return Signed(cp, last.note)
            signed = Signed(cp, note.sign_checkpoint(cp, rt.audit_signer))
            if _store(session, SIGNED, last, signed, utc_naive(rt.now())):
                return signed
        log.info("another instance signed a checkpoint first; reading it again")
    raise Inconsistent("the last signed checkpoint kept changing while it was being extended")


def _proof_from(rt: Runtime, size: int) -> tlog_witness.ProofFrom:
    def proof(old: int) -> Sequence[bytes]:
        if old in (0, size):  # tlog-witness: empty from 0; RFC 9162: empty for equal sizes
            return []
        with rt.db.session() as session:
            return store.consistency_proof(session, old, size)

    return proof


def _last_published_size(rt: Runtime) -> int:
    with rt.db.session() as session:
        row = _row(session, COSIGNED)
        return 0 if row is None else row.size


def cosign(rt: Runtime, signed: Signed, witnesses: LogWitnesses) -> Cosigning:
    """Ask every witness to cosign ``signed``; the note with what they returned, and the verdict."""
    hint = _last_published_size(rt)
    proof = _proof_from(rt, signed.checkpoint.size)

    def one(client: tlog_witness.WitnessClient) -> list[tlog_witness.Cosignature] | str:
        try:
            return tlog_witness.cosign(
                client, min(hint, signed.checkpoint.size), proof, signed.note
            )[1]
        except (tlog_witness.WitnessError, store.LogError) as exc:
            return str(exc)

    results: list[list[tlog_witness.Cosignature] | str] = []
    if witnesses.clients:
        with ThreadPoolExecutor(max_workers=len(witnesses.clients)) as pool:
            results = list(pool.map(one, witnesses.clients))
    text = signed.note
    failures: dict[str, str] = {}
    for client, result in zip(witnesses.clients, results, strict=True):
        if isinstance(result, str):
            failures[client.url] = result
            log.warning(
                "witness %s did not cosign size %d: %s", client.url, signed.checkpoint.size, result
            )
        else:
            text = tlog_witness.add_cosignatures(text, result)
    try:
        verified = trust.verify_checkpoint(text, witnesses.policy, origin=signed.checkpoint.origin)
    except trust.CheckpointRefused as exc:
        return Cosigning(text, None, str(exc), failures)
    return Cosigning(text, verified, "", failures)


def record_published(rt: Runtime, published: Signed) -> bool:
    """Serve ``published`` (a note that met the quorum), unless a larger tree is served already."""
    cp = published.checkpoint
    with rt.db.session() as session:
        last = _row(session, COSIGNED, lock=True)
        if last is not None and (
            last.size > cp.size or (last.size == cp.size and last.note == published.note)
        ):
            return False
        if last is not None and last.size == cp.size and last.root != cp.root:
            raise Inconsistent(f"two cosigned checkpoints of size {cp.size} with other roots")
        return _store(session, COSIGNED, last, published, utc_naive(rt.now()))


def published(rt: Runtime) -> str | None:
    """The note of the latest checkpoint published with its witnesses' quorum, if any."""
    with rt.db.session() as session:
        row = _row(session, COSIGNED)
        return None if row is None else row.note


def served(rt: Runtime) -> str:
    """The checkpoint the gateway serves: the latest published with its quorum of witnesses,
    or the newest signed one when it has no witnesses. :class:`NotPublished` before the first."""
    if not log_witnesses(rt).required:
        return sign_latest(rt).note
    text = published(rt)
    if text is None:
        raise NotPublished(
            "no checkpoint has been cosigned by the witnesses' quorum yet; the newest "
            "checkpoint the gateway signed is at /v1/audit/tlog/signed-checkpoint"
        )
    return text
