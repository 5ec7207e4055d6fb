"""The one way to record an event in the audit log.

Every part of the gateway calls :func:`record` inside the same database transaction
as the effect it records, so the entry and the effect commit together or not at all.
When the entry cannot be committed the effect does not happen, and the client gets 503
when the database is unavailable (:func:`fail_closed`). Denials are recorded in a transaction of their own
(:func:`record_denial`), since they have no effect to share one with; repeats of one
denial within an interval are counted and recorded as one entry when the interval
closes (:mod:`gateway.services.denials`, :func:`close_denials`).

Who acted is passed in: a :class:`~gateway.caller.Caller` (an actor and the request it
came through, whose id and client address the entry keeps), a bare
:class:`~gateway.caller.Actor`, or None for the operator at the CLI. Nothing here knows
of HTTP or of a web framework.

An entry's ``request_id`` is always the server's own. What the client said of its request
travels in a :class:`ClientRequest`: the id it chose (kept in ``details`` as
``client_request_id``), and whether it came with no principal's token (a signed URL:
whoever holds one is anonymous, so refusals under it are counted in metrics, never logged).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import (
    TimeoutError as PoolTimeout,
)
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.audit import store as audit_store
from gateway.caller import Actor, Caller, RequestMeta
from gateway.clock import rfc3339_micro
from gateway.errors import AuditUnavailable, BadRequest, Conflict, GatewayError
from gateway.runtime import Runtime
from gateway.services import denials

log = logging.getLogger("gateway.events")

CLI_ACTOR = Actor(id="cli", name="operator-cli", org="operator", role="admin")
_UNAVAILABLE = (
    "the audit log could not record this action, so it was not carried out; try again later"
)


@dataclass(frozen=True)
class ClientRequest(RequestMeta):
    """A request's metadata and what its client said of it (see the top of this module)."""

    client_request_id: str | None = None
    bearerless: bool = False


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
) -> None:
    """Sequence one audit entry in ``session``'s transaction (:func:`gateway.audit.store.append`).

    The entry commits with the effect, or neither does; the log's integrator gives it its
    index afterwards, and every reader of the log integrates what is pending first.

    ``who`` None is the operator at the CLI; an entry has a request id and a client
    address only when ``who`` is a :class:`Caller` that came through a request.
    """
    caller = who if isinstance(who, Caller) else Caller(who or CLI_ACTOR)
    actor, meta = caller.actor, caller.meta
    details = dict(details or {})
    if isinstance(meta, ClientRequest) and meta.client_request_id is not None:
        details.setdefault("client_request_id", meta.client_request_id)
    # Looked up on the module at each call, so a test can make the log fail.
    audit_store.append(
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
        details=details,
    )


@contextmanager
def fail_closed(rt: Runtime) -> Iterator[Session]:
    """A transaction whose failure to commit (the audit entry included) refuses the action.

    Whatever fails, the transaction rolls back: the action does not happen. What the
    client is told depends on why (:func:`_refusal`): the database unreachable or failing
    is the 503 that says the audit log is unavailable; a value it refuses is a 400, and a
    row that another transaction made first is a 409. Anything else is a fault of the
    gateway, answered 500 like any other.
    """
    try:
        with rt.db.session() as session:
            yield session
    except GatewayError:
        raise
    except SQLAlchemyError as exc:
        refusal = _refusal(exc)
        if refusal is None:
            raise
        raise refusal from None


# The database's availability: connecting, talking to it, waiting for a connection, and
# what it reports of itself (sqlite's locked or read-only file, a PostgreSQL shutdown,
# a serialization failure or deadlock).
_OUTAGES = (OperationalError, InterfaceError, PoolTimeout, DisconnectionError)
# PostgreSQL's SQLSTATE classes of the same (psycopg raises some as InternalError): a
# connection exception, insufficient resources, an operator intervention, a system error,
# an invalid transaction state (a read-only standby after a failover, an idle transaction
# timed out), a transaction rollback, an internal error.
_OUTAGE_STATES = ("08", "53", "57", "58", "25", "40", "XX")
_DATA = (
    "a value in the request cannot be stored (text with a NUL character, or a value out of "
    "range for its field), so the action was not carried out"
)
_CONFLICT = (
    "another change made at the same moment holds a value this action needs to be unique, "
    "so it was not carried out; try again"
)


def _refusal(exc: SQLAlchemyError) -> GatewayError | None:
    """The error the client is given for ``exc``, or None when it is a fault of the gateway.

    The cause is logged either way (the database's message, never a bound value): an
    outage at ERROR, for the operator to act on; bad data and conflicts at WARNING, since
    a client can cause them at will.
    """
    cause = getattr(exc, "orig", None) or exc
    invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
    state = str(getattr(cause, "sqlstate", None) or "")
    if isinstance(exc, _OUTAGES) or invalidated or state.startswith(_OUTAGE_STATES):
        log.error("transaction failed, action refused: %s: %s", type(exc).__name__, cause)
        return AuditUnavailable(_UNAVAILABLE)
    if isinstance(exc, DataError):
        log.warning("value refused by the database, action refused: %s", type(cause).__name__)
        return BadRequest(_DATA)
    if isinstance(exc, IntegrityError) and (
        state == "23505" or "UNIQUE constraint failed" in str(cause)
    ):
        log.warning("conflict in the database, action refused: %s", type(cause).__name__)
        return Conflict(_CONFLICT)
    return None  # another integrity error (a foreign key, a NOT NULL) is the gateway's fault


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
    """Record the refusal of an authenticated principal, fail-closed; a repeat is counted.

    The first refusal of one thing in an interval is an ``auth.denied`` entry; repeats are
    counted (:mod:`gateway.services.denials`). A refusal under a request that carries no
    principal's token (a signed URL) is counted in metrics only.
    """
    caller = who if isinstance(who, Caller) else Caller(who)
    meta = caller.meta
    if isinstance(meta, ClientRequest) and meta.bearerless:
        metrics.anonymous_refusal(reason)
        return
    actor = caller.actor
    key = denials.DenialKey(
        actor.id, actor.org, actor.role, action, reason, artifact, grant, subject_org
    )
    # Two first refusals racing to open the interval: the loser's insert conflicts, and on
    # the second try it finds the winner's row and counts itself there.
    for attempt in (1, 2):
        try:
            with fail_closed(rt) as session:
                _deny(rt, session, caller, key)
            return
        except Conflict as exc:
            if attempt == 2 or not isinstance(exc.__context__, IntegrityError):
                raise


def _deny(rt: Runtime, session: Session, caller: Caller, key: denials.DenialKey) -> None:
    now = rt.now()
    meta = caller.meta
    request_id = meta.request_id if meta is not None else None
    ip = meta.ip if meta is not None else None
    interval = timedelta(seconds=rt.config.limits.denial_interval_seconds)
    if denials.count_repeat(session, key, now, interval, request_id, ip):
        metrics.DENIALS_COLLAPSED.inc()
        return
    row = denials.closed(session, key)
    if row is not None and row.count:
        _record_repeats(rt, session, row)
    record(
        rt,
        session,
        "auth.denied",
        caller,
        artifact=key.artifact,
        grant=key.grant,
        subject_org=key.subject_org,
        outcome="denied",
        details={"attempted": key.action, "reason": key.reason},
    )
    denials.start(session, key, now, row)


def _record_repeats(rt: Runtime, session: Session, row: denials.DenialCount) -> None:
    """One ``auth.denied`` entry for the ``row.count`` repeats of a closed interval."""
    actor = Actor(id=row.actor, name=row.actor, org=row.org, role=row.role)
    meta = RequestMeta(row.last_request_id, row.last_ip) if row.last_request_id else None
    first, last = row.first or row.window_start, row.last or row.window_start
    record(
        rt,
        session,
        "auth.denied",
        Caller(actor, meta),
        artifact=row.artifact or None,
        grant=row.grant or None,
        subject_org=row.subject_org or None,
        outcome="denied",
        details={
            "attempted": row.action,
            "reason": row.reason,
            "count": row.count,
            "first": rfc3339_micro(first),
            "last": rfc3339_micro(last),
        },
    )


def close_denials(rt: Runtime, now: datetime) -> int:
    """Record the repeats of every closed interval as one entry each; how many were recorded.

    For the sweeper: without it, an interval's repeats wait for that denial to happen again.
    """
    interval = timedelta(seconds=rt.config.limits.denial_interval_seconds)
    recorded = 0
    with fail_closed(rt) as session:
        for row in denials.expired(session, now, interval):
            if row.count:
                _record_repeats(rt, session, row)
                recorded += 1
            denials.forget(session, row)
    return recorded
