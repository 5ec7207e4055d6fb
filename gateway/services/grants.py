"""Grants: finding and listing them, revoking them, ending them, and the artifact lock.

A grant ends at the earliest of its duration, the artifact's ``review_ends_at``, a
revocation and a withdrawal; its re-written header (key material) is deleted with it, in
the transaction that records its end. A grant whose ``not_after`` has passed is expired
at once, whether or not the sweeper has written the ``grant.expire`` entry yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from gateway import authz, events
from gateway.caller import Actor, Caller
from gateway.db import cas_update
from gateway.errors import BadRequest, Conflict
from gateway.models import Artifact, ArtifactState, Grant, GrantState
from gateway.paging import Key, Keyset, Page, PageRequest, page
from gateway.runtime import Runtime

GRANT_ORDER = Keyset(
    Key(Grant.not_before, datetime, descending=True), Key(Grant.id, str, descending=True)
)


@dataclass(frozen=True)
class Filters:
    """What a list of requests or grants is narrowed to (None: no narrowing)."""

    artifact: str | None = None
    state: str | None = None


def get_grant(rt: Runtime, caller: Caller, grant_id: str, action: str) -> Grant:
    """The grant (with its artifact), if ``caller`` may do ``action`` on it."""
    with rt.db.session() as session:
        grant = session.get(Grant, grant_id)
    return authz.require_found(rt, caller, action, grant, what=f"grant {grant_id}")


def grants_visible(
    rt: Runtime, actor: Actor, filters: Filters, request: PageRequest
) -> Page[Grant]:
    """Lab: grants on its org's artifacts; evaluator: its own; auditor, admin: all.

    ``filters.state`` is the state a grant shows (:meth:`Grant.state_at`): a grant past
    its ``not_after`` is ``expired`` whether or not the sweeper has ended its row yet.
    """
    query = select(Grant).where(authz.scope(actor, Grant))
    if filters.artifact is not None:
        query = query.where(Grant.artifact_id == filters.artifact)
    if filters.state is not None:
        query = query.where(_in_state(filters.state, rt.now()))
    with rt.db.session() as session:
        return page(session, query, GRANT_ORDER, request)


def _in_state(state: str, now: datetime) -> ColumnElement[bool]:
    """The SQL of :meth:`Grant.state_at` equal to ``state``; 400 for a state there is not."""
    if state == GrantState.ACTIVE:
        return and_(Grant.state == GrantState.ACTIVE, Grant.not_after > now)
    if state == GrantState.EXPIRED:
        return or_(
            Grant.state == GrantState.EXPIRED,
            and_(Grant.state == GrantState.ACTIVE, Grant.not_after <= now),
        )
    if state == GrantState.REVOKED:
        return Grant.state == GrantState.REVOKED
    raise BadRequest(f"state must be one of {', '.join(GrantState)}; got {state!r}")


def revoke(rt: Runtime, caller: Caller, grant: Grant) -> None:
    state = grant.state_at(rt.now())
    if state != GrantState.ACTIVE:
        authz.refuse(
            rt,
            caller,
            "grant.revoke",
            f"grant {state}",
            Conflict(f"grant {grant.id} is already {state}"),
            subject=grant,
        )
    with events.fail_closed(rt) as session:
        row = session.get(Grant, grant.id)
        assert row is not None  # grants are never deleted
        if not end_grant(rt, session, row, caller, GrantState.REVOKED, "grant.revoke", "revoked"):
            raise Conflict(f"grant {grant.id} is already {row.state}")


def end_grant(
    rt: Runtime,
    session: Session,
    grant: Grant,
    who: Caller | None,
    state: GrantState,
    action: str,
    cause: str,
) -> bool:
    """End an active grant and delete its header, with its audit entry; False if not active."""
    done = cas_update(
        session,
        update(Grant)
        .where(Grant.id == grant.id, Grant.state == GrantState.ACTIVE)
        .values(
            state=state, ended_at=rt.now(), ended_by=who.actor.id if who else None, header=None
        ),
    )
    if not done:
        return False
    artifact = session.get(Artifact, grant.artifact_id)
    events.record(
        rt,
        session,
        action,
        who,
        artifact=grant.artifact_id,
        grant=grant.id,
        subject_org=artifact.org if artifact else None,
        details={"grantee": grant.grantee_id, "cause": cause},
    )
    return True


def lock_available(session: Session, artifact_id: str, now: datetime) -> bool:
    """Lock the artifact's row if it is available and inside its window; False if not.

    A no-op update: it takes the row lock a withdrawal's compare-and-set also takes, so
    whatever this transaction decides commits wholly before or wholly after a withdrawal
    (SQLite serialises every write transaction anyway).
    """
    return bool(
        cas_update(
            session,
            update(Artifact)
            .where(
                Artifact.id == artifact_id,
                Artifact.state == ArtifactState.AVAILABLE,
                Artifact.review_ends_at > now,
            )
            .values(state=Artifact.state),
        )
    )


def expire_past(
    rt: Runtime, session: Session, artifact_id: str, grantee_id: str, now: datetime
) -> None:
    """Expire the grantee's grants on the artifact whose time is up but whose row says active."""
    past = session.scalars(
        select(Grant).where(
            Grant.artifact_id == artifact_id,
            Grant.grantee_id == grantee_id,
            Grant.state == GrantState.ACTIVE,
            Grant.not_after <= now,
        )
    ).all()
    for grant in past:
        end_grant(rt, session, grant, None, GrantState.EXPIRED, "grant.expire", "duration ended")
