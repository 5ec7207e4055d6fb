"""Dashboard sessions: signing in with a gateway token, resuming, signing out.

A principal pastes its token once; :func:`start` checks it exactly as the API does
(:func:`gateway.services.identity.authenticate`) and stores a session that names the
principal and the token's id. The cookie carries 32 random bytes; the table keeps their
SHA-256, looked up and then compared in constant time. :func:`resume` checks, on every
request, the session's own ends (idle, absolute, signed out) and the token's (revoked,
expired), so revoking a token ends its sessions at once, and a session can never do more
than its token: the actor it yields is the token's principal, with that principal's role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from gateway.caller import Actor
from gateway.errors import Unauthorized
from gateway.models import Principal, Token, new_id
from gateway.runtime import Runtime
from gateway.services import identity
from gateway.web.models import WebSession

TOUCH_EVERY = timedelta(seconds=30)
"""How stale ``last_seen_at`` may be before a request writes it again (idle expiry's grain)."""

_SIGNED_OUT = "your dashboard session has ended: sign in again"


@dataclass(frozen=True)
class Resumed:
    """A live session: who it acts for, and the value its CSRF tokens are bound to."""

    id: str
    actor: Actor
    csrf_secret: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start(rt: Runtime, token: str) -> tuple[str, Resumed]:
    """A new session for the principal of ``token``: the cookie's secret, and the session.

    The token is refused for the reasons the API would refuse it (:class:`Unauthorized`).
    """
    actor = identity.authenticate(rt, token)
    web = rt.config.web
    now = rt.now()
    secret = secrets.token_urlsafe(32)
    with rt.db.session() as session:
        token_id = session.scalar(
            select(Token.id).where(Token.token_hash == identity.hash_token(token))
        )
        if token_id is None:  # revoked between the two reads: refuse as the API would
            raise Unauthorized("the bearer token is not valid")
        row = WebSession(
            id=new_id("wss"),
            secret_hash=_digest(secret),
            principal_id=actor.id,
            token_id=token_id,
            csrf_secret=secrets.token_hex(32),
            created_at=now,
            last_seen_at=now,
            idle_expires_at=now + timedelta(minutes=web.idle_minutes),
            expires_at=now + timedelta(hours=web.absolute_hours),
        )
        session.add(row)
    return secret, Resumed(row.id, actor, row.csrf_secret)


def resume(rt: Runtime, secret: str | None) -> Resumed:
    """The live session whose cookie carries ``secret``; :class:`Unauthorized` otherwise."""
    if not secret or len(secret) > 128:
        raise Unauthorized(_SIGNED_OUT)
    digest = _digest(secret)
    now = rt.now()
    with rt.db.session() as session:
        found = session.execute(
            select(WebSession, Token, Principal)
            .join(Token, Token.id == WebSession.token_id)
            .join(Principal, Principal.id == WebSession.principal_id)
            .where(WebSession.secret_hash == digest)
        ).first()
        if found is None or not hmac.compare_digest(found[0].secret_hash, digest):
            raise Unauthorized(_SIGNED_OUT)
        row, token, principal = found
        if (
            row.revoked_at is not None
            or row.expires_at <= now
            or row.idle_expires_at <= now
            or token.revoked_at is not None
            or token.expires_at <= now
            or token.principal_id != principal.id
        ):
            raise Unauthorized(_SIGNED_OUT)
        if now - row.last_seen_at >= TOUCH_EVERY:
            idle = now + timedelta(minutes=rt.config.web.idle_minutes)
            row.last_seen_at, row.idle_expires_at = now, min(idle, row.expires_at)
        actor = Actor(
            id=principal.id,
            name=principal.name,
            org=principal.org,
            role=principal.role,
            recipient=principal.recipient,
        )
        return Resumed(row.id, actor, row.csrf_secret)


def end(rt: Runtime, session_id: str) -> None:
    """Sign out: the session is refused from now on, whoever holds its cookie."""
    with rt.db.session() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
            .values(revoked_at=rt.now())
        )
