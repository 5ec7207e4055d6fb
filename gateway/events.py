"""The one way to record an event in the audit log.

Every part of the gateway calls :func:`record` inside the same database transaction
as the effect it records, so the entry and the effect commit together or not at all.
When the entry cannot be committed the effect does not happen and the client gets
503 (:func:`fail_closed`). Denials are recorded in a transaction of their own
(:func:`record_denial`), since they have no effect to share one with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway.errors import AuditUnavailable, GatewayError
from gateway.runtime import Gateway
from gateway.services.identity import Actor

log = logging.getLogger("gateway.events")

CLI_ACTOR = Actor(id="cli", name="operator-cli", org="operator", role="admin")


def _request_meta() -> tuple[str | None, str | None]:
    if not has_request_context():
        return None, None
    return getattr(g, "request_id", None), request.remote_addr


def record(
    gw: Gateway,
    session: Session,
    action: str,
    actor: Actor | None,
    *,
    artifact: str | None = None,
    grant: str | None = None,
    subject_org: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> Any:
    """Append one audit entry in ``session``'s transaction; returns the stored entry."""
    from gateway.audit import store as audit_store

    who = actor or CLI_ACTOR
    request_id, ip = _request_meta()
    entry = audit_store.append(
        session,
        time=gw.now(),
        actor=who.id,
        org=who.org,
        role=who.role,
        action=action,
        artifact=artifact,
        grant=grant,
        subject_org=subject_org,
        outcome=outcome,
        request_id=request_id,
        ip=ip,
        details=details or {},
    )
    if has_request_context():
        g.audit_entries = getattr(g, "audit_entries", 0) + 1
    return entry


@contextmanager
def fail_closed(gw: Gateway) -> Iterator[Session]:
    """A transaction whose failure to commit (the audit entry included) becomes a 503."""
    try:
        with gw.db.session() as session:
            yield session
    except GatewayError:
        raise
    except SQLAlchemyError as exc:
        log.error(
            "transaction failed, action refused: %s: %s",
            type(exc).__name__,
            getattr(exc, "orig", exc),
        )
        raise AuditUnavailable(
            "the audit log could not record this action, so it was not carried out; try again later"
        ) from None


def record_denial(
    gw: Gateway,
    actor: Actor,
    action: str,
    reason: str,
    *,
    artifact: str | None = None,
    grant: str | None = None,
    subject_org: str | None = None,
) -> None:
    """Record an ``auth.denied`` entry for an authenticated principal, fail-closed."""
    with fail_closed(gw) as session:
        record(
            gw,
            session,
            "auth.denied",
            actor,
            artifact=artifact,
            grant=grant,
            subject_org=subject_org,
            outcome="denied",
            details={"attempted": action, "reason": reason},
        )
