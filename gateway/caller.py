"""Who is asking, and through which request: passed explicitly into services and the audit log.

An :class:`Actor` is an authenticated principal (or the operator at the CLI); a
:class:`RequestMeta` is what the audit log keeps of the HTTP request it came in (its id
and the client's address); a :class:`Caller` is both. Services take a ``Caller`` so that
every entry they record names the request, without reaching into a web framework; an
action outside any request (the CLI, the sweeper) has no ``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """The authenticated principal of a request (or the operator at the CLI)."""

    id: str
    name: str
    org: str
    role: str
    recipient: str | None = None


@dataclass(frozen=True)
class RequestMeta:
    """The request an action came in: the id every audit entry of it carries, and the client's address."""

    request_id: str
    ip: str | None = None


@dataclass(frozen=True)
class Caller:
    """An actor and the request it acts through (``meta`` is None outside a request)."""

    actor: Actor
    meta: RequestMeta | None = None
