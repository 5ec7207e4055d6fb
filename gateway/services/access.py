"""Access: an evaluator's requests, a lab's decisions, grants, revocation, withdrawal, expiry.

A grant ends at the earliest of its duration (``access.default_grant_hours`` unless the
request or the approving lab asks for less, at most ``access.max_grant_hours``), the
artifact's ``review_ends_at``, a revocation and a withdrawal. Time comes only from
``gw.now()``: a grant whose ``not_after`` has passed is treated as expired at once,
whether or not the sweeper has written the ``grant.expire`` entry yet.

Withdrawal and expiry crypto-shred an artifact: in one fail-closed transaction its
grants end (their re-written headers are deleted), its pending requests are
cancelled, the wrapped custody identity (``CustodyKey``) is deleted, the stored object
is deleted, and each step is an audit entry. The metadata and the audit history stay.

Who may try is decided by the views through ``gateway.policy``; the state refusals
here (pending, denied, revoked, gone...) are recorded as ``auth.denied`` entries by
:func:`refuse` before the error is raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from gateway import events
from gateway.clock import rfc3339
from gateway.db import page
from gateway.errors import BadRequest, Conflict, Forbidden, GatewayError, Gone
from gateway.models import AccessRequest, Artifact, CustodyKey, Grant, Upload, new_id
from gateway.runtime import Gateway
from gateway.services.identity import Actor

log = logging.getLogger("gateway.access")

ENDED_ARTIFACT = ("withdrawn", "expired")


def refuse(
    gw: Gateway,
    who: Actor,
    action: str,
    reason: str,
    error: GatewayError,
    *,
    artifact: Artifact | None = None,
    grant: str | None = None,
) -> NoReturn:
    """Record the refusal as ``auth.denied`` (with ``reason``), then raise ``error``."""
    events.record_denial(
        gw,
        who,
        action,
        reason,
        artifact=artifact.id if artifact else None,
        grant=grant,
        subject_org=artifact.org if artifact else None,
    )
    raise error


def require_available(gw: Gateway, who: Actor, action: str, artifact: Artifact) -> None:
    """410 (recorded) for an artifact withdrawn, expired, or past its review window."""
    if artifact.state in ENDED_ARTIFACT:
        refuse(
            gw,
            who,
            action,
            f"artifact {artifact.state}",
            Gone(
                f"artifact {artifact.id} was {artifact.state} at {rfc3339(artifact.ended_at)}; "
                "its key has been shredded"
            ),
            artifact=artifact,
        )
    if artifact.review_ends_at <= gw.now():
        refuse(
            gw,
            who,
            action,
            "review window ended",
            Gone(
                f"the review window of artifact {artifact.id} ended at {rfc3339(artifact.review_ends_at)}"
            ),
            artifact=artifact,
        )


def changed(session: Session, statement: Any) -> int:
    """Run an UPDATE; how many rows it changed (a conditional update is a compare-and-set)."""
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return int(result.rowcount)


def grant_state(grant: Grant, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``, counting a passed ``not_after`` as expired."""
    if grant.state == "active" and grant.not_after <= now:
        return "expired"
    return grant.state


def _hours(value: Any, what: str, ceiling: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
        raise BadRequest(
            f"field '{what}' must be an integer number of hours between 1 and {ceiling}"
        )
    return value


# --- requests ---------------------------------------------------------------------------


def create_request(
    gw: Gateway, who: Actor, artifact: Artifact, body: dict[str, Any]
) -> AccessRequest:
    justification = body.get("justification")
    if not isinstance(justification, str) or not justification.strip() or len(justification) > 4096:
        raise BadRequest(
            "field 'justification' must be a non-empty string of at most 4096 characters"
        )
    duration = _hours(
        body.get("duration_hours"), "duration_hours", gw.config.access.max_grant_hours
    )
    require_available(gw, who, "access.request", artifact)
    with gw.db.session() as session:
        open_ = session.scalars(
            select(AccessRequest).where(
                AccessRequest.artifact_id == artifact.id,
                AccessRequest.principal_id == who.id,
                AccessRequest.state == "pending",
            )
        ).first()
        live = [
            g
            for g in session.scalars(
                select(Grant).where(
                    Grant.artifact_id == artifact.id,
                    Grant.grantee_id == who.id,
                    Grant.state == "active",
                )
            )
            if grant_state(g, gw.now()) == "active"
        ]
    if open_ is not None:
        refuse(
            gw,
            who,
            "access.request",
            "request already pending",
            Conflict(
                f"access request {open_.id} for this artifact is still pending", request=open_.id
            ),
            artifact=artifact,
        )
    if live:
        refuse(
            gw,
            who,
            "access.request",
            "grant already active",
            Conflict(f"grant {live[0].id} on this artifact is still active", grant=live[0].id),
            artifact=artifact,
        )
    with events.fail_closed(gw) as session:
        row = AccessRequest(
            id=new_id("req"),
            artifact_id=artifact.id,
            org=who.org,
            principal_id=who.id,
            justification=justification,
            duration_hours=duration,
            state="pending",
            created_at=gw.now(),
        )
        session.add(row)
        session.flush()
        events.record(
            gw,
            session,
            "access.request",
            who,
            artifact=artifact.id,
            subject_org=artifact.org,
            details={"request": row.id, "justification": justification, "duration_hours": duration},
        )
    return row


def approve(
    gw: Gateway, who: Actor, req: AccessRequest, artifact: Artifact, body: dict[str, Any]
) -> Grant:
    """Turn a pending request into a grant ending at the earliest of its limits."""
    requested = req.duration_hours or gw.config.access.default_grant_hours
    duration = _hours(body.get("duration_hours"), "duration_hours", requested) or requested
    _require_pending(gw, who, "access.decide", req, artifact)
    require_available(gw, who, "access.decide", artifact)
    now = gw.now()
    with events.fail_closed(gw) as session:
        grant = Grant(
            id=new_id("grt"),
            artifact_id=artifact.id,
            request_id=req.id,
            grantee_id=req.principal_id,
            org=req.org,
            not_before=now,
            not_after=min(now + timedelta(hours=duration), artifact.review_ends_at),
            state="active",
        )
        _decide(
            session, req, state="approved", decided_at=now, decided_by=who.id, grant_id=grant.id
        )
        session.add(grant)
        session.flush()
        events.record(
            gw,
            session,
            "access.approve",
            who,
            artifact=artifact.id,
            grant=grant.id,
            subject_org=artifact.org,
            details={
                "request": req.id,
                "grantee": req.principal_id,
                "agency": req.org,
                "duration_hours": duration,
                "not_after": rfc3339(grant.not_after),
            },
        )
    return grant


def deny(
    gw: Gateway, who: Actor, req: AccessRequest, artifact: Artifact, body: dict[str, Any]
) -> AccessRequest:
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 4096):
        raise BadRequest("field 'reason' must be a string of at most 4096 characters")
    _require_pending(gw, who, "access.decide", req, artifact)
    with events.fail_closed(gw) as session:
        _decide(session, req, state="denied", decided_at=gw.now(), decided_by=who.id, reason=reason)
        events.record(
            gw,
            session,
            "access.deny",
            who,
            artifact=artifact.id,
            subject_org=artifact.org,
            details={"request": req.id, "grantee": req.principal_id, "reason": reason},
        )
        row = session.get(AccessRequest, req.id)
    assert row is not None
    return row


def _decide(session: Session, req: AccessRequest, **values: Any) -> None:
    """Move a request out of ``pending`` (compare-and-set: one decision wins)."""
    if not changed(
        session,
        update(AccessRequest)
        .where(AccessRequest.id == req.id, AccessRequest.state == "pending")
        .values(**values),
    ):
        raise Conflict(f"access request {req.id} was decided meanwhile")


def _require_pending(
    gw: Gateway, who: Actor, action: str, req: AccessRequest, artifact: Artifact
) -> None:
    if req.state != "pending":
        refuse(
            gw,
            who,
            action,
            f"request {req.state}",
            Conflict(f"access request {req.id} is already {req.state}"),
            artifact=artifact,
        )


def requests_visible(
    session: Session, who: Actor, limit: int, offset: int, filters: dict[str, str]
) -> tuple[list[AccessRequest], bool]:
    """Lab: requests on its org's artifacts; evaluator: its own; auditor, admin: all."""
    query = select(AccessRequest).order_by(AccessRequest.created_at.desc(), AccessRequest.id)
    if who.role == "lab":
        query = query.join(Artifact, Artifact.id == AccessRequest.artifact_id).where(
            Artifact.org == who.org
        )
    elif who.role == "evaluator":
        query = query.where(AccessRequest.principal_id == who.id)
    if "artifact" in filters:
        query = query.where(AccessRequest.artifact_id == filters["artifact"])
    if "state" in filters:
        query = query.where(AccessRequest.state == filters["state"])
    return page(session, query, limit, offset)


def request_json(r: AccessRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "artifact": r.artifact_id,
        "requester": r.principal_id,
        "org": r.org,
        "justification": r.justification,
        "duration_hours": r.duration_hours,
        "state": r.state,
        "created_at": rfc3339(r.created_at),
        "decided_at": rfc3339(r.decided_at),
        "decided_by": r.decided_by,
        "reason": r.reason,
        "grant": r.grant_id,
    }


# --- grants -------------------------------------------------------------------------------


def grants_visible(
    session: Session, who: Actor, limit: int, offset: int, filters: dict[str, str]
) -> tuple[list[Grant], bool]:
    """Lab: grants on its org's artifacts; evaluator: its own; auditor, admin: all."""
    query = select(Grant).order_by(Grant.not_before.desc(), Grant.id)
    if who.role == "lab":
        query = query.join(Artifact, Artifact.id == Grant.artifact_id).where(
            Artifact.org == who.org
        )
    elif who.role == "evaluator":
        query = query.where(Grant.grantee_id == who.id)
    if "artifact" in filters:
        query = query.where(Grant.artifact_id == filters["artifact"])
    return page(session, query, limit, offset)


def grant_json(g: Grant, now: datetime) -> dict[str, Any]:
    """A grant as the API shows it: never its header (key material for the grantee only)."""
    return {
        "id": g.id,
        "artifact": g.artifact_id,
        "request": g.request_id,
        "grantee": g.grantee_id,
        "org": g.org,
        "not_before": rfc3339(g.not_before),
        "not_after": rfc3339(g.not_after),
        "state": grant_state(g, now),
        "ended_at": rfc3339(g.ended_at),
        "released_at": rfc3339(g.released_at),
        "recipient": g.recipient,
    }


def revoke(gw: Gateway, who: Actor, grant: Grant, artifact: Artifact) -> None:
    state = grant_state(grant, gw.now())
    if state != "active":
        refuse(
            gw,
            who,
            "grant.revoke",
            f"grant {state}",
            Conflict(f"grant {grant.id} is already {state}"),
            artifact=artifact,
            grant=grant.id,
        )
    with events.fail_closed(gw) as session:
        row = session.get(Grant, grant.id)
        assert row is not None
        if not _end_grant(gw, session, row, who, "revoked", "grant.revoke", "revoked"):
            raise Conflict(f"grant {grant.id} is already {row.state}")


def _end_grant(
    gw: Gateway,
    session: Session,
    grant: Grant,
    who: Actor | None,
    state: str,
    action: str,
    cause: str,
) -> bool:
    """End an active grant and delete its header, with its audit entry; False if not active."""
    done = changed(
        session,
        update(Grant)
        .where(Grant.id == grant.id, Grant.state == "active")
        .values(state=state, ended_at=gw.now(), ended_by=who.id if who else None, header=None),
    )
    if not done:
        return False
    artifact = session.get(Artifact, grant.artifact_id)
    events.record(
        gw,
        session,
        action,
        who,
        artifact=grant.artifact_id,
        grant=grant.id,
        subject_org=artifact.org if artifact else None,
        details={"grantee": grant.grantee_id, "cause": cause},
    )
    return True


# --- withdrawal and expiry ------------------------------------------------------------------


@dataclass(frozen=True)
class Shredded:
    grants_ended: int
    requests_cancelled: int
    key_shredded: bool
    objects_deleted: list[str]


def withdraw(gw: Gateway, who: Actor, artifact: Artifact) -> Shredded:
    """The owning lab withdraws: crypto-shred now (410 if it already ended)."""
    if artifact.state in ENDED_ARTIFACT:
        refuse(
            gw,
            who,
            "artifact.withdraw",
            f"artifact {artifact.state}",
            Gone(
                f"artifact {artifact.id} was already {artifact.state} at {rfc3339(artifact.ended_at)}"
            ),
            artifact=artifact,
        )
    result = shred(gw, artifact.id, who, "withdrawn")
    if result is None:
        raise Gone(f"artifact {artifact.id} has already ended")
    return result


def shred(gw: Gateway, artifact_id: str, who: Actor | None, state: str) -> Shredded | None:
    """End an available artifact as ``withdrawn`` or ``expired``; None if it had already ended.

    Every step shares one transaction with its audit entry: if the log cannot record it,
    nothing happens. The object is deleted last, inside the transaction, so the
    ``artifact.*`` entry is only committed once the store has let go of the ciphertext.
    """
    grant_action, artifact_action = (
        ("grant.revoke", "artifact.withdraw")
        if state == "withdrawn"
        else ("grant.expire", "artifact.expire")
    )
    with events.fail_closed(gw) as session:
        now = gw.now()
        claimed = changed(
            session,
            update(Artifact)
            .where(Artifact.id == artifact_id, Artifact.state == "available")
            .values(state=state, ended_at=now),
        )
        if not claimed:
            return None
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None
        ended = sum(
            _end_grant(
                gw,
                session,
                g,
                who,
                "revoked" if state == "withdrawn" else "expired",
                grant_action,
                f"artifact {state}",
            )
            for g in session.scalars(
                select(Grant).where(Grant.artifact_id == artifact_id, Grant.state == "active")
            ).all()
        )
        # Headers of grants that ended earlier are key material too: none may survive.
        session.execute(update(Grant).where(Grant.artifact_id == artifact_id).values(header=None))
        cancelled = changed(
            session,
            update(AccessRequest)
            .where(AccessRequest.artifact_id == artifact_id, AccessRequest.state == "pending")
            .values(state="cancelled", decided_at=now, reason=f"artifact {state}"),
        )
        custody = session.get(CustodyKey, artifact.upload_id)
        if custody is not None:
            session.delete(custody)
        upload = session.get(Upload, artifact.upload_id)
        if upload is not None:
            upload.header_prefix = None  # the kept copy of the stored header goes with the object
        session.flush()
        deleted = _delete_objects(gw, artifact)
        result = Shredded(ended, cancelled, custody is not None, deleted)
        events.record(
            gw,
            session,
            artifact_action,
            who,
            artifact=artifact_id,
            subject_org=artifact.org,
            details={
                "grants_ended": ended,
                "requests_cancelled": cancelled,
                "key_shredded": result.key_shredded,
                "objects_deleted": deleted,
            },
        )
    return result


def _delete_objects(gw: Gateway, artifact: Artifact) -> list[str]:
    try:
        deleted = gw.store.delete(artifact.object_key)
    except FileNotFoundError:  # already gone: deleting is idempotent
        deleted = False
    return [artifact.object_key] if deleted else []


def sweep(gw: Gateway, now: datetime) -> dict[str, int]:
    """Expire artifacts past their review window, then grants past ``not_after``."""
    with gw.db.session() as session:
        due_artifacts = list(
            session.scalars(
                select(Artifact.id).where(
                    Artifact.state == "available", Artifact.review_ends_at <= now
                )
            )
        )
    expired_artifacts = 0
    for artifact_id in due_artifacts:
        try:
            expired_artifacts += shred(gw, artifact_id, None, "expired") is not None
        except Exception:  # noqa: BLE001 - one failure must not stop the others; retried next sweep
            log.exception("could not expire artifact %s; retrying next sweep", artifact_id)
    with gw.db.session() as session:
        due_grants = list(
            session.scalars(select(Grant.id).where(Grant.state == "active", Grant.not_after <= now))
        )
    expired_grants = 0
    for grant_id in due_grants:
        with events.fail_closed(gw) as session:
            grant = session.get(Grant, grant_id)
            if grant is not None:
                expired_grants += _end_grant(
                    gw, session, grant, None, "expired", "grant.expire", "duration ended"
                )
    return {"artifacts_expired": expired_artifacts, "grants_expired": expired_grants}


def forbid(
    gw: Gateway,
    who: Actor,
    action: str,
    reason: str,
    detail: str,
    *,
    artifact: Artifact,
    grant: str | None = None,
) -> NoReturn:
    """A recorded 403 for a state refusal (no grant, pending, denied, revoked, expired)."""
    refuse(
        gw, who, action, reason, Forbidden(detail, reason=reason), artifact=artifact, grant=grant
    )
