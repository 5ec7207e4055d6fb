"""What every view needs: the runtime the app carries, and the caller of the request."""

from __future__ import annotations

from flask import current_app, g, request

from gateway.api.middleware import budget, rate_limits, request_meta
from gateway.caller import Caller
from gateway.limits import PRINCIPAL
from gateway.runtime import Runtime
from gateway.services import identity


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["gateway"]
    return rt


def caller() -> Caller:
    """The authenticated caller (set by :func:`authenticate_request`)."""
    who: Caller = g.caller
    return who


def authenticate_request() -> None:
    """``before_request`` of every ``/v1`` blueprint: the bearer token becomes the caller.

    The request then counts against that principal's rate budget (429 past it).
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    actor = identity.authenticate(runtime(), token.strip() or None)
    g.caller = Caller(actor, request_meta())
    rate_limits().hit(PRINCIPAL, budget(), actor.id)
