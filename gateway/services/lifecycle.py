"""The end of an artifact's life: withdrawal by its lab, expiry at the review window's end.

Both crypto-shred the artifact, and neither ever fails open:

1. One fail-closed transaction ends it: the artifact is claimed (compare-and-set
   ``available`` to ``withdrawn`` or ``expired``), its grants end (their re-written headers
   are deleted), its pending requests are cancelled, the deletion of its stored object is
   queued (``pending_deletions``), the ``artifact.*`` entry is appended, and last, just
   before the commit, the wrapped identity is deleted and its key destroyed in the custody
   backend (:func:`gateway.services.custody_keys.destroy_custody_key`). Once this
   commits, nothing can release the key or send the content again. If the commit fails
   after the destroy, the key is gone but the artifact still shows ``available``: no key
   release or completion can succeed for it (410), and the retry (the lab withdrawing
   again; for an expiry, the sweeper's next pass, which finds it past its window again)
   destroys nothing more and commits the shred.
2. Then the store deletes the object. Success removes it from the queue with its own
   ``object.delete`` entry; a failure (an outage, throttling) leaves it queued, and the
   sweeper retries it every sweep until it succeeds. The lab is told which happened.

The metadata and the audit history stay. The sweeper also expires grants past their
``not_after``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from gateway import authz, events
from gateway.caller import Caller
from gateway.clock import rfc3339
from gateway.db import cas_update
from gateway.errors import Gone
from gateway.models import (
    AccessRequest,
    Artifact,
    ArtifactState,
    CustodyKey,
    Grant,
    GrantState,
    PendingDeletion,
    RequestState,
    Upload,
)
from gateway.runtime import Runtime
from gateway.services.artifacts import ENDED
from gateway.services.custody_keys import destroy_custody_key
from gateway.services.grants import end_grant

log = logging.getLogger("gateway.lifecycle")

DELETIONS_PER_SWEEP = 100
MAX_ERROR = 500


@dataclass(frozen=True)
class Shredded:
    """What ending an artifact did; ``deleted`` False means its object's deletion is pending."""

    artifact: str
    state: str
    grants_ended: int
    requests_cancelled: int
    key_shredded: bool
    object_key: str
    deleted: bool = False


def withdraw(rt: Runtime, caller: Caller, artifact: Artifact) -> Shredded:
    """The owning lab withdraws: crypto-shred now (410 if it already ended)."""
    if artifact.state in ENDED:
        authz.refuse(
            rt,
            caller,
            "artifact.withdraw",
            f"artifact {artifact.state}",
            Gone(
                f"artifact {artifact.id} was already {artifact.state} at {rfc3339(artifact.ended_at)}"
            ),
            subject=artifact,
        )
    result = shred(rt, artifact.id, caller, ArtifactState.WITHDRAWN)
    if result is None:
        raise Gone(f"artifact {artifact.id} has already ended")
    return result


def shred(
    rt: Runtime, artifact_id: str, who: Caller | None, state: ArtifactState
) -> Shredded | None:
    """End an available artifact as ``withdrawn`` or ``expired``; None if it had already ended.

    The shred commits first (see the module's steps); the object is deleted after it, and
    ``deleted`` says whether that has happened yet.
    """
    withdrawn = state == ArtifactState.WITHDRAWN
    with events.fail_closed(rt) as session:
        claimed = cas_update(
            session,
            update(Artifact)
            .where(Artifact.id == artifact_id, Artifact.state == ArtifactState.AVAILABLE)
            .values(state=state, ended_at=rt.now()),
        )
        if not claimed:
            return None
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None  # the update above just changed it
        ended, cancelled = _end_access(rt, session, artifact, who, state)
        upload = session.get(Upload, artifact.upload_id)
        if upload is not None:
            upload.header_prefix = None  # the kept copy of the stored header goes with the object
        session.add(
            PendingDeletion(
                key=artifact.object_key,
                artifact_id=artifact.id,
                reason=state,
                attempts=0,
                created_at=rt.now(),
            )
        )
        had_key = session.get(CustodyKey, artifact.upload_id) is not None
        events.record(
            rt,
            session,
            "artifact.withdraw" if withdrawn else "artifact.expire",
            who,
            artifact=artifact_id,
            subject_org=artifact.org,
            details={
                "grants_ended": ended,
                "requests_cancelled": cancelled,
                "key_shredded": had_key,
                # A list in the entry's format: an artifact is one object today.
                "objects_to_delete": [artifact.object_key],
            },
        )
        session.flush()
        destroy_custody_key(rt, session, artifact.upload_id)  # last: it cannot be undone
        result = Shredded(artifact_id, state, ended, cancelled, had_key, artifact.object_key)
    rt.db.scrub()  # the deleted rows' old bytes leave the database's files too
    return dataclasses.replace(result, deleted=delete_object(rt, result.object_key, who))


def _end_access(
    rt: Runtime, session: Session, artifact: Artifact, who: Caller | None, state: ArtifactState
) -> tuple[int, int]:
    """End the artifact's active grants, delete every header, cancel pending requests."""
    withdrawn = state == ArtifactState.WITHDRAWN
    grant_state = GrantState.REVOKED if withdrawn else GrantState.EXPIRED
    grant_action = "grant.revoke" if withdrawn else "grant.expire"
    active = session.scalars(
        select(Grant).where(Grant.artifact_id == artifact.id, Grant.state == GrantState.ACTIVE)
    ).all()
    ended = sum(
        end_grant(rt, session, g, who, grant_state, grant_action, f"artifact {state}")
        for g in active
    )
    # Headers of grants that ended earlier are key material too: none may survive.
    session.execute(update(Grant).where(Grant.artifact_id == artifact.id).values(header=None))
    cancelled = cas_update(
        session,
        update(AccessRequest)
        .where(
            AccessRequest.artifact_id == artifact.id,
            AccessRequest.state == RequestState.PENDING,
        )
        .values(state=RequestState.CANCELLED, decided_at=rt.now(), reason=f"artifact {state}"),
    )
    return ended, cancelled


# --- deleting the stored objects of shredded artifacts ----------------------------------


def delete_object(rt: Runtime, key: str, who: Caller | None) -> bool:
    """Delete a queued object from the store; True once deleted and logged, False if pending.

    Any failure leaves the object queued, with the attempt counted, for the next sweep.
    """
    try:
        found = rt.store.delete(key)
    except Exception as exc:  # noqa: BLE001 - any failure of the store leaves it queued
        log.warning("could not delete the stored object %s; the sweeper retries: %s", key, exc)
        _count_attempt(rt, key, f"{type(exc).__name__}: {exc}")
        return False
    try:
        return _deleted(rt, key, who, found)
    except Exception as exc:  # noqa: BLE001 - deleted, not logged: the sweeper logs it
        log.warning("deleted %s but could not log it; the sweeper retries: %s", key, exc)
        _count_attempt(rt, key, f"{type(exc).__name__}: {exc}")
        return False


def _deleted(rt: Runtime, key: str, who: Caller | None, found: bool) -> bool:
    """Take the key off the queue with its ``object.delete`` entry (once, whoever races)."""
    with events.fail_closed(rt) as session:
        row = session.get(PendingDeletion, key)
        if row is None:
            return True  # another sweep logged it meanwhile
        artifact = session.get(Artifact, row.artifact_id)
        taken = session.execute(delete(PendingDeletion).where(PendingDeletion.key == key))
        assert isinstance(taken, CursorResult)  # a DELETE always answers with a cursor
        if not taken.rowcount:
            return True
        events.record(
            rt,
            session,
            "object.delete",
            who,
            artifact=row.artifact_id,
            subject_org=artifact.org if artifact is not None else None,
            details={
                "key": key,
                "reason": row.reason,
                "attempts": row.attempts + 1,
                "found": found,
            },
        )
    return True


def _count_attempt(rt: Runtime, key: str, error: str) -> None:
    try:
        with rt.db.session() as session:
            session.execute(
                update(PendingDeletion)
                .where(PendingDeletion.key == key)
                .values(
                    attempts=PendingDeletion.attempts + 1,
                    last_error=error[:MAX_ERROR],
                    last_attempt_at=rt.now(),
                )
            )
    except Exception as exc:  # noqa: BLE001 - the count is a courtesy; the queue row stays
        log.warning("could not count a failed deletion of %s: %s", key, exc)


def sweep_deletions(rt: Runtime) -> int:
    """Retry the queued deletions, oldest first; how many were deleted."""
    with rt.db.session() as session:
        keys = list(
            session.scalars(
                select(PendingDeletion.key)
                .order_by(PendingDeletion.created_at, PendingDeletion.key)
                .limit(DELETIONS_PER_SWEEP)
            )
        )
    return sum(delete_object(rt, key, None) for key in keys)


# --- the sweeper's expiry -----------------------------------------------------------------


def sweep(rt: Runtime, now: datetime) -> dict[str, int]:
    """Expire artifacts past their review window, then grants past ``not_after``.

    Each artifact and each grant is its own transaction: one that fails is logged and
    retried by the next sweep, and does not stop the others.
    """
    with rt.db.session() as session:
        due_artifacts = list(
            session.scalars(
                select(Artifact.id).where(
                    Artifact.state == ArtifactState.AVAILABLE, Artifact.review_ends_at <= now
                )
            )
        )
    expired_artifacts = 0
    for artifact_id in due_artifacts:
        try:
            expired_artifacts += shred(rt, artifact_id, None, ArtifactState.EXPIRED) is not None
        except Exception:  # one failure must not stop the others; retried next sweep
            log.exception("could not expire artifact %s; retrying next sweep", artifact_id)
    with rt.db.session() as session:
        due_grants = list(
            session.scalars(
                select(Grant.id).where(Grant.state == GrantState.ACTIVE, Grant.not_after <= now)
            )
        )
    expired_grants = 0
    for grant_id in due_grants:
        try:
            expired_grants += _expire_grant(rt, grant_id)
        except Exception:  # one failure must not stop the others; retried next sweep
            log.exception("could not expire grant %s; retrying next sweep", grant_id)
    return {"artifacts_expired": expired_artifacts, "grants_expired": expired_grants}


def _expire_grant(rt: Runtime, grant_id: str) -> bool:
    with events.fail_closed(rt) as session:
        grant = session.get(Grant, grant_id)
        if grant is None:
            return False
        return end_grant(
            rt, session, grant, None, GrantState.EXPIRED, "grant.expire", "duration ended"
        )
