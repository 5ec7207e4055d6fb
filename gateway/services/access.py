"""Access: an evaluator's requests, a lab's decisions, grants and their revocation.

A grant ends at the earliest of its duration (``access.default_grant_hours`` unless the
request or the approving lab asks for less, at most ``access.max_grant_hours``), the
artifact's ``review_ends_at``, a revocation and a withdrawal. Time comes only from
``rt.now()``: a grant whose ``not_after`` has passed is treated as expired at once,
whether or not the sweeper has written the ``grant.expire`` entry yet.

Who may try is decided by :mod:`gateway.authz`; the state refusals here (pending,
denied, revoked, gone...) are recorded as ``auth.denied`` entries by
:func:`gateway.authz.refuse` before the error is raised.

Races are closed by the database, not by the checks made first (those give the friendly
answer): a partial unique index allows one pending request and one active grant per
evaluator and artifact, and an approval locks the artifact's row while it checks it is
still available (:func:`gateway.services.grants.lock_available`), so a withdrawal and an
approval serialise. Grants themselves, and how they end, are in :mod:`gateway.services.grants`.

Under lab custody the approval carries the header the lab made for the grantee
(:mod:`gateway.services.lab_custody` says what is checked of it): it is stored on the
grant, with the recipient it was made for, in the approval's transaction, which re-reads
the grantee's registered recipient, so a recipient registered meanwhile refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import authz, events
from gateway.caller import Actor, Caller
from gateway.clock import rfc3339
from gateway.db import cas_update
from gateway.errors import BadRequest, Conflict
from gateway.models import (
    AccessRequest,
    Artifact,
    Custody,
    Grant,
    GrantState,
    RequestState,
    new_id,
)
from gateway.paging import Key, Keyset, Page, PageRequest, page
from gateway.runtime import Runtime
from gateway.services import grants
from gateway.services.artifacts import get as get_artifact
from gateway.services.artifacts import require_available
from gateway.services.grants import GRANT_ORDER, Filters, get_grant, grants_visible, revoke
from gateway.services.lab_custody import GrantHeader, lab_header, registered_recipient

MAX_TEXT = 4096

# Grants live in gateway.services.grants; these names stay here for their callers.
__all__ = ["GRANT_ORDER", "Filters", "get_grant", "grants_visible", "revoke"]

REQUEST_ORDER = Keyset(
    Key(AccessRequest.created_at, datetime, descending=True),
    Key(AccessRequest.id, str, descending=True),
)


@dataclass(frozen=True)
class NewRequest:
    """An evaluator's request for access: why, and for how many hours (None: the default)."""

    justification: str
    duration_hours: int | None = None

    def __post_init__(self) -> None:
        text = self.justification
        if not text.strip() or len(text) > MAX_TEXT:
            raise BadRequest(
                f"field 'justification' must be a non-empty string of at most {MAX_TEXT} characters"
            )


@dataclass(frozen=True)
class Approval:
    """A lab's approval: the grant's duration in hours (None: what the request asked for);
    under lab custody, the header the lab made and the recipient it made it for."""

    duration_hours: int | None = None
    header: bytes | None = None
    recipient: str | None = None


@dataclass(frozen=True)
class Denial:
    """A lab's denial, with an optional reason the evaluator sees."""

    reason: str | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and len(self.reason) > MAX_TEXT:
            raise BadRequest(f"field 'reason' must be a string of at most {MAX_TEXT} characters")


def _hours(value: int | None, ceiling: int) -> int | None:
    if value is not None and not 1 <= value <= ceiling:
        raise BadRequest(
            f"field 'duration_hours' must be an integer number of hours between 1 and {ceiling}"
        )
    return value


# --- finding one ----------------------------------------------------------------------------


def get_request(rt: Runtime, caller: Caller, request_id: str, action: str) -> AccessRequest:
    """The access request (with its artifact), if ``caller`` may do ``action`` on it."""
    with rt.db.session() as session:
        req = session.get(AccessRequest, request_id)
    what = f"access request {request_id}"
    return authz.require_found(rt, caller, action, req, what=what)


# --- requests ---------------------------------------------------------------------------


class _Taken(Exception):
    """A unique index refused the row: another request got there first."""


def create_request(
    rt: Runtime, caller: Caller, artifact: Artifact, new: NewRequest
) -> AccessRequest:
    who = caller.actor
    duration = _hours(new.duration_hours, rt.config.access.max_grant_hours)
    require_available(rt, caller, "access.request", artifact)
    _refuse_duplicates(rt, caller, artifact)
    try:
        with events.fail_closed(rt) as session:
            row = AccessRequest(
                id=new_id("req"),
                artifact_id=artifact.id,
                org=who.org,
                principal_id=who.id,
                justification=new.justification,
                duration_hours=duration,
                state=RequestState.PENDING,
                created_at=rt.now(),
            )
            session.add(row)
            _flush_unique(session)
            events.record(
                rt,
                session,
                "access.request",
                caller,
                artifact=artifact.id,
                subject_org=artifact.org,
                details={
                    "request": row.id,
                    "justification": new.justification,
                    "duration_hours": duration,
                },
            )
    except _Taken:
        _refuse_duplicates(rt, caller, artifact)  # names the request that won
        raise Conflict("an access request for this artifact is already pending") from None
    return row


def _flush_unique(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise _Taken from None


def _refuse_duplicates(
    rt: Runtime, caller: Caller, artifact: Artifact, *, grantee: str | None = None
) -> None:
    """A recorded 409 while the evaluator has a pending request or an active grant on ``artifact``.

    The evaluator is the caller, or ``grantee`` when a lab approves (then only grants count).
    """
    who, now = grantee or caller.actor.id, rt.now()
    with rt.db.session() as session:
        pending = None
        if grantee is None:
            pending = session.scalars(
                select(AccessRequest).where(
                    AccessRequest.artifact_id == artifact.id,
                    AccessRequest.principal_id == who,
                    AccessRequest.state == RequestState.PENDING,
                )
            ).first()
        live = [
            g
            for g in session.scalars(
                select(Grant).where(
                    Grant.artifact_id == artifact.id,
                    Grant.grantee_id == who,
                    Grant.state == GrantState.ACTIVE,
                )
            )
            if g.state_at(now) == GrantState.ACTIVE
        ]
    action = "access.request" if grantee is None else "access.decide"
    if pending is not None:
        authz.refuse(
            rt,
            caller,
            "access.request",
            "request already pending",
            Conflict(
                f"access request {pending.id} for this artifact is still pending",
                request=pending.id,
            ),
            subject=artifact,
        )
    if live:
        authz.refuse(
            rt,
            caller,
            action,
            "grant already active",
            Conflict(f"grant {live[0].id} on this artifact is still active", grant=live[0].id),
            subject=artifact,
        )


def approve(rt: Runtime, caller: Caller, req: AccessRequest, approval: Approval) -> Grant:
    """Turn a pending request into a grant ending at the earliest of its limits.

    In one transaction: the artifact is locked while still available, the grantee's active
    grants past their end are expired (so they never block this one), the request is
    decided (compare-and-set), and the grant is inserted under its unique index.
    """
    artifact = req.artifact
    requested = req.duration_hours or rt.config.access.default_grant_hours
    duration = _hours(approval.duration_hours, requested) or requested
    _require_pending(rt, caller, "access.decide", req)
    require_available(rt, caller, "access.decide", artifact)
    made = lab_header(rt, req, approval.header, approval.recipient)
    try:
        grant = _grant(rt, caller, req, duration, made)
    except _Gone:
        fresh = get_artifact(rt, caller, artifact.id, "access.decide")
        require_available(rt, caller, "access.decide", fresh)
        raise Conflict(f"artifact {artifact.id} is no longer available") from None
    except _Taken:
        _refuse_duplicates(rt, caller, artifact, grantee=req.principal_id)
        raise Conflict("the grantee already has an active grant on this artifact") from None
    return grant


class _Gone(Exception):
    """The artifact was no longer available when the transaction locked it."""


def _grant(
    rt: Runtime, caller: Caller, req: AccessRequest, duration: int, made: GrantHeader | None
) -> Grant:
    artifact = req.artifact
    now = rt.now()
    with events.fail_closed(rt) as session:
        if not grants.lock_available(session, artifact.id, now):
            raise _Gone
        if made is not None:  # in this transaction: a recipient registered meanwhile refuses
            registered_recipient(session, req, made.recipient)
        grants.expire_past(rt, session, artifact.id, req.principal_id, now)
        grant = Grant(
            id=new_id("grt"),
            artifact_id=artifact.id,
            request_id=req.id,
            grantee_id=req.principal_id,
            org=req.org,
            not_before=now,
            not_after=min(now + timedelta(hours=duration), artifact.review_ends_at),
            state=GrantState.ACTIVE,
        )
        if made is not None:  # the lab's key release: the header it made, as it made it
            grant.header, grant.recipient, grant.released_at = made.raw, made.recipient, now
        _decide(
            session,
            req,
            state=RequestState.APPROVED,
            decided_at=now,
            decided_by=caller.actor.id,
            grant_id=grant.id,
        )
        session.add(grant)
        _flush_unique(session)
        events.record(
            rt,
            session,
            "access.approve",
            caller,
            artifact=artifact.id,
            grant=grant.id,
            subject_org=artifact.org,
            details={
                "request": req.id,
                "grantee": req.principal_id,
                "agency": req.org,
                "duration_hours": duration,
                "not_after": rfc3339(grant.not_after),
                **_released_by_lab(made),
            },
        )
    return grant


def _released_by_lab(made: GrantHeader | None) -> dict[str, Any]:
    if made is None:
        return {}
    return {
        "custody": Custody.LAB,
        "recipient": made.recipient,
        "header_sha256": made.sha256,
        "header_size": len(made.raw),
    }


def deny(rt: Runtime, caller: Caller, req: AccessRequest, denial: Denial) -> AccessRequest:
    artifact = req.artifact
    _require_pending(rt, caller, "access.decide", req)
    with events.fail_closed(rt) as session:
        _decide(
            session,
            req,
            state=RequestState.DENIED,
            decided_at=rt.now(),
            decided_by=caller.actor.id,
            reason=denial.reason,
        )
        events.record(
            rt,
            session,
            "access.deny",
            caller,
            artifact=artifact.id,
            subject_org=artifact.org,
            details={"request": req.id, "grantee": req.principal_id, "reason": denial.reason},
        )
        row = session.get(AccessRequest, req.id)
    assert row is not None  # the decision above just changed it
    return row


def _decide(session: Session, req: AccessRequest, **values: Any) -> None:
    """Move a request out of ``pending`` (compare-and-set: one decision wins)."""
    if not cas_update(
        session,
        update(AccessRequest)
        .where(AccessRequest.id == req.id, AccessRequest.state == RequestState.PENDING)
        .values(**values),
    ):
        raise Conflict(f"access request {req.id} was decided meanwhile")


def _require_pending(rt: Runtime, caller: Caller, action: str, req: AccessRequest) -> None:
    if req.state != RequestState.PENDING:
        authz.refuse(
            rt,
            caller,
            action,
            f"request {req.state}",
            Conflict(f"access request {req.id} is already {req.state}"),
            subject=req.artifact,
        )


def requests_visible(
    rt: Runtime, actor: Actor, filters: Filters, request: PageRequest
) -> Page[AccessRequest]:
    """Lab: requests on its org's artifacts; evaluator: its own; auditor, admin: all."""
    query = select(AccessRequest).where(authz.scope(actor, AccessRequest))
    if filters.artifact is not None:
        query = query.where(AccessRequest.artifact_id == filters.artifact)
    if filters.state is not None:
        query = query.where(AccessRequest.state == filters.state)
    with rt.db.session() as session:
        return page(session, query, REQUEST_ORDER, request)
