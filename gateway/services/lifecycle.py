"""The end of an artifact's life: withdrawal by its lab, expiry at the review window's end.

Both crypto-shred the artifact in one fail-closed transaction: its grants end (their
re-written headers are deleted), its pending requests are cancelled, the wrapped custody
identity (``CustodyKey``) is deleted, the stored object is deleted, and each step is an
audit entry. The metadata and the audit history stay. The sweeper also expires grants
past their ``not_after``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
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
    RequestState,
    Upload,
)
from gateway.runtime import Runtime
from gateway.services.access import end_grant
from gateway.services.artifacts import ENDED
from gateway.services.objects import store_errors

log = logging.getLogger("gateway.lifecycle")


@dataclass(frozen=True)
class Shredded:
    grants_ended: int
    requests_cancelled: int
    key_shredded: bool
    object_deleted: str | None
    """The key of the stored object deleted, None when the store held none any more."""


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

    Every step shares one transaction with its audit entry, and the object is deleted
    last inside it, so the ``artifact.*`` entry is only committed once the store has let go
    of the ciphertext. The store's delete cannot be rolled back: should the commit fail
    after it, the artifact stays ``available`` with its custody key, its ciphertext gone.
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
        custody = session.get(CustodyKey, artifact.upload_id)
        if custody is not None:
            session.delete(custody)
        upload = session.get(Upload, artifact.upload_id)
        if upload is not None:
            upload.header_prefix = None  # the kept copy of the stored header goes with the object
        session.flush()
        with store_errors():
            deleted = artifact.object_key if rt.store.delete(artifact.object_key) else None
        result = Shredded(ended, cancelled, custody is not None, deleted)
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
                "key_shredded": result.key_shredded,
                # A list in the entry's format: an artifact is one object today.
                "objects_deleted": [deleted] if deleted else [],
            },
        )
    return result


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
