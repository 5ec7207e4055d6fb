"""The one way to record an event in the audit log.

Every part of the gateway calls :func:`record` inside the same database transaction
as the effect it records, so the entry and the effect commit together or not at all.
When the entry cannot be committed the effect does not happen and the client gets
503 (:func:`fail_closed`). Denials are recorded in a transaction of their own
(:func:`record_denial`), since they have no effect to share one with.

Who acted is passed in: a :class:`~gateway.caller.Caller` (an actor and the request it
came through, whose id and client address the entry keeps), a bare
:class:`~gateway.caller.Actor`, or None for the operator at the CLI. Nothing here knows
of HTTP or of a web framework.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway.audit import store as audit_store
from gateway.caller import Actor, Caller
from gateway.errors import AuditUnavailable, GatewayError
from gateway.runtime import Runtime

log = logging.getLogger("gateway.events")

CLI_ACTOR = Actor(id="cli", name="operator-cli", org="operator", role="admin")


def record(
    rt: Runtime,
    session: Session,
    action: str,
    who: Caller | Actor | None,
    *,
    artifact: str | None = None,
    grant: str | None = None,
    subject_org: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> audit_store.Entry:
    """Append one audit entry in ``session``'s transaction; returns the stored entry.

    ``who`` None is the operator at the CLI; an entry has a request id and a client
    address only when ``who`` is a :class:`Caller` that came through a request.
    """
    caller = who if isinstance(who, Caller) else Caller(who or CLI_ACTOR)
    actor, meta = caller.actor, caller.meta
    # Looked up on the module at each call, so a test can make the log fail.
    return audit_store.append(
        session,
        time=rt.now(),
        actor=actor.id,
        org=actor.org,
        role=actor.role,
        action=action,
        artifact=artifact,
        grant=grant,
        subject_org=subject_org,
        outcome=outcome,
        request_id=meta.request_id if meta is not None else None,
        ip=meta.ip if meta is not None else None,
        details=details or {},
    )


@contextmanager
def fail_closed(rt: Runtime) -> Iterator[Session]:
    """A transaction whose failure to commit (the audit entry included) becomes a 503."""
    try:
        with rt.db.session() as session:
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
    rt: Runtime,
    who: Caller | Actor,
    action: str,
    reason: str,
    *,
    artifact: str | None = None,
    grant: str | None = None,
    subject_org: str | None = None,
) -> None:
    """Record an ``auth.denied`` entry for an authenticated principal, fail-closed."""
    with fail_closed(rt) as session:
        record(
            rt,
            session,
            "auth.denied",
            who,
            artifact=artifact,
            grant=grant,
            subject_org=subject_org,
            outcome="denied",
            details={"attempted": action, "reason": reason},
        )
