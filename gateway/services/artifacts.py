"""Artifacts: finding one a principal may act on, reading it, listing the ones it may see.

Which artifacts a principal sees is :func:`gateway.authz.scope`'s to say, in SQL: an
evaluator's list is the artifacts whose ``artifact_shares`` name its agency. An
evaluator's read of an artifact's metadata is an access, so it is an audit entry.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from gateway import authz, events
from gateway.caller import Actor, Caller
from gateway.clock import rfc3339
from gateway.errors import Gone
from gateway.models import Artifact, ArtifactState, Role
from gateway.paging import Key, Keyset, Page, PageRequest, page
from gateway.runtime import Runtime

ENDED = (ArtifactState.WITHDRAWN, ArtifactState.EXPIRED)

ORDER = Keyset(
    Key(Artifact.submitted_at, datetime, descending=True), Key(Artifact.id, str, descending=True)
)
"""Newest first (ties by id, the same way, so the listing index is read backwards)."""


def get(rt: Runtime, caller: Caller, artifact_id: str, action: str) -> Artifact:
    """The artifact, if ``caller`` may do ``action`` on it; else a recorded 404 or 403."""
    with rt.db.session() as session:
        artifact = session.get(Artifact, artifact_id)
    return authz.require_found(rt, caller, action, artifact, what=f"artifact {artifact_id}")


def read(rt: Runtime, caller: Caller, artifact: Artifact) -> Artifact:
    """``artifact`` as its reader sees it; an evaluator's read is recorded first."""
    if caller.actor.role == Role.EVALUATOR:
        with events.fail_closed(rt) as session:
            events.record(
                rt, session, "artifact.read", caller, artifact=artifact.id, subject_org=artifact.org
            )
    return artifact


def visible(rt: Runtime, actor: Actor, request: PageRequest) -> Page[Artifact]:
    """One page of the artifacts ``actor`` may see, newest first."""
    query = select(Artifact).where(authz.scope(actor, Artifact))
    with rt.db.session() as session:
        return page(session, query, ORDER, request)


def require_available(rt: Runtime, caller: Caller, action: str, artifact: Artifact) -> None:
    """410 (recorded) for an artifact withdrawn, expired, being shredded, or past its window."""
    if artifact.state in ENDED:
        authz.refuse(
            rt,
            caller,
            action,
            f"artifact {artifact.state}",
            Gone(
                f"artifact {artifact.id} was {artifact.state} at {rfc3339(artifact.ended_at)}; "
                "its key has been shredded"
            ),
            subject=artifact,
        )
    if artifact.state == ArtifactState.SHREDDING:
        authz.refuse(
            rt,
            caller,
            action,
            "artifact shredding",
            Gone(f"artifact {artifact.id} has ended; its key is being shredded"),
            subject=artifact,
        )
    if artifact.review_ends_at <= rt.now():
        authz.refuse(
            rt,
            caller,
            action,
            "review window ended",
            Gone(
                f"the review window of artifact {artifact.id} ended at "
                f"{rfc3339(artifact.review_ends_at)}"
            ),
            subject=artifact,
        )
