"""The dashboard's table: server-side sessions.

A session row points at the principal and at the token it signed in with, never at the
token itself; the cookie holds a random secret of which only the SHA-256 is stored. A
session ends at the first of: ``idle_expires_at`` (moved on by each request),
``expires_at`` (fixed at sign-in), ``revoked_at`` (sign-out), and its token's own
revocation or expiry.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

import gateway.models  # noqa: F401 - the principals and tokens tables the keys refer to
from gateway.db import Base


class WebSession(Base):
    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # SHA-256 of the cookie's secret, hex: the secret itself is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("tokens.id"), index=True)
    # The value this session's CSRF tokens are bound to (HMAC-ed, never sent as is).
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    idle_expires_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
