"""The end of an artifact's life: withdrawal by its lab, expiry at the review window's end.

Both crypto-shred the artifact, and neither ever fails open. A shred converges: every
step after the first can be repeated until it is done, by the same call, a retry or the
sweeper.

1. One fail-closed transaction ends access and marks the artifact ``shredding``: the
   artifact is claimed (compare-and-set ``available`` to ``shredding``), its grants end
   (their re-written headers are deleted), its pending requests are cancelled, the
   deletion of its stored object is queued (``pending_deletions``, whose ``reason`` names
   the end, ``withdrawn`` or ``expired``), and the ``artifact.*`` entry is appended, once.
   From this commit on nothing releases the key, serves the content or grants access
   (each of those refuses an artifact that is not ``available``).
2. A second transaction finishes the shred: it moves ``shredding`` to the end's state
   (compare-and-set, so two finishers cannot both finish), deletes the wrapped identity
   and, last before the commit, destroys its key in the custody backend
   (:func:`gateway.services.custody_keys.destroy_custody_key`). If the destroy or the
   commit fails, the artifact stays ``shredding``: the call tries once more, then the
   lab's next withdrawal or the sweeper's next pass (:func:`sweep_shredding`) finishes it.
   A destroy repeated after a failed commit finds no key and destroys nothing more; no
   entry is appended again.
3. Then the store deletes the object. Success removes it from the queue with its own
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
from gateway.errors import Gone, ServiceUnavailable
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
    """The owning lab withdraws: crypto-shred now (410 if it already ended).

    An artifact left ``shredding`` by an earlier attempt (a 503, a racing withdrawal) is
    finished instead, and answered 410 like one already ended: the withdrawal that began
    the shred is the one logged and acknowledged.
    """
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
    if artifact.state == ArtifactState.SHREDDING:
        # Another withdrawal (or an expiry) began it and logged it: finish it, then answer
        # as for an artifact already ended, so only the request that acted is acknowledged.
        begun = Shredded(artifact.id, artifact.state, 0, 0, True, artifact.object_key)
        _conclude(rt, begun, caller)
        authz.refuse(
            rt,
            caller,
            "artifact.withdraw",
            "artifact shredding",
            Gone(
                f"artifact {artifact.id} was already being shredded since "
                f"{rfc3339(artifact.ended_at)}; that shred is now finished"
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

    Access ends and the artifact is ``shredding`` once the first step commits; the key's
    destruction follows (see the module's steps), then the object's deletion, and
    ``deleted`` says whether that has happened yet. Raises the 503 of a destroy or commit
    that failed twice: the artifact then stays ``shredding`` until finished.
    """
    begun = _begin(rt, artifact_id, who, state)
    if begun is None:
        return None
    return _conclude(rt, begun, who)


def _begin(
    rt: Runtime, artifact_id: str, who: Caller | None, state: ArtifactState
) -> Shredded | None:
    """Step 1: end every access, queue the deletion, log the end; None if not available."""
    withdrawn = state == ArtifactState.WITHDRAWN
    with events.fail_closed(rt) as session:
        claimed = cas_update(
            session,
            update(Artifact)
            .where(Artifact.id == artifact_id, Artifact.state == ArtifactState.AVAILABLE)
            .values(state=ArtifactState.SHREDDING, ended_at=rt.now()),
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
                reason=state,  # also what the shred ends as, should the sweeper finish it
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
        return Shredded(artifact_id, state, ended, cancelled, had_key, artifact.object_key)


def _conclude(rt: Runtime, begun: Shredded, who: Caller | None) -> Shredded:
    """Steps 2 and 3 after step 1 committed: finish the shred (twice at most), delete the object."""
    try:
        try:
            final = finish_shred(rt, begun.artifact)
        except ServiceUnavailable as exc:  # a destroy or commit that failed: once more
            log.warning("could not finish shredding %s; trying again: %s", begun.artifact, exc)
            final = finish_shred(rt, begun.artifact)
    finally:
        rt.db.scrub()  # the deleted rows' old bytes leave the database's files too
    if final is None:  # finished by another call meanwhile: say what it ended as
        with rt.db.session() as session:
            now = session.get(Artifact, begun.artifact)
            final = now.state if now is not None else begun.state
    state = final
    deleted = delete_object(rt, begun.object_key, who)
    return dataclasses.replace(begun, state=state, deleted=deleted)


def finish_shred(rt: Runtime, artifact_id: str) -> str | None:
    """Step 2: ``shredding`` to its end, the key destroyed; the end, or None if not shredding.

    Idempotent and safe to race: the compare-and-set lets one finisher through, and a
    destroy after one whose commit failed finds no key left. 503 (the artifact stays
    ``shredding``) when the custody backend or the commit fails.
    """
    with events.fail_closed(rt) as session:
        artifact = session.get(Artifact, artifact_id)
        if artifact is None or artifact.state != ArtifactState.SHREDDING:
            return None
        final = _end_state(session, artifact)
        claimed = cas_update(
            session,
            update(Artifact)
            .where(Artifact.id == artifact_id, Artifact.state == ArtifactState.SHREDDING)
            .values(state=final),
        )
        if not claimed:
            return None  # another finisher got there first
        destroy_custody_key(rt, session, artifact.upload_id)  # last: it cannot be undone
        return final


def _end_state(session: Session, artifact: Artifact) -> ArtifactState:
    """What a ``shredding`` artifact ends as: the reason its deletion was queued with."""
    reason = session.scalar(
        select(PendingDeletion.reason).where(PendingDeletion.artifact_id == artifact.id).limit(1)
    )
    if reason in (ArtifactState.WITHDRAWN, ArtifactState.EXPIRED):
        return ArtifactState(reason)
    # The queue row is kept while shredding (see sweep_deletions); this is only a fallback.
    log.warning(
        "artifact %s is shredding with no queued deletion; ending it as withdrawn", artifact.id
    )
    return ArtifactState.WITHDRAWN


def sweep_shredding(rt: Runtime) -> int:
    """Finish the shreds left ``shredding`` by a failed destroy or commit; how many finished."""
    with rt.db.session() as session:
        left = list(
            session.scalars(select(Artifact.id).where(Artifact.state == ArtifactState.SHREDDING))
        )
    finished = 0
    for artifact_id in left:
        try:
            finished += finish_shred(rt, artifact_id) is not None
        except Exception:  # one failure must not stop the others; retried next sweep
            log.exception(
                "could not finish shredding artifact %s; retrying next sweep", artifact_id
            )
    if left:
        rt.db.scrub()
    return finished


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
                .join(Artifact, Artifact.id == PendingDeletion.artifact_id)
                # a shred still to finish needs its row: its reason is the artifact's end
                .where(Artifact.state != ArtifactState.SHREDDING)
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
