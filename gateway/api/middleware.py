"""Per request: its id, metadata and address budget before the view; headers on the answer.

The request id is always the gateway's own (``req_`` and 96 random bits): every answer
carries it in ``X-Request-Id``, and every audit entry of the request in ``request_id``
(through :class:`gateway.events.ClientRequest`). A client may name its request too
(``X-Request-Id``, up to 64 characters of ``[A-Za-z0-9._-]``): that name is kept in each
entry's ``details.client_request_id`` and echoed in ``X-Client-Request-Id``, never
taken as the gateway's id (one client could otherwise reuse another's). A name that does
not fit is ignored.

Before anything else, the request counts against its client address's rate budget
(:mod:`gateway.limits`); an authenticated one then counts against its principal's too
(:func:`gateway.api.context.authenticate_request`).
"""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, current_app, g, request

from gateway import metrics
from gateway.caller import RequestMeta
from gateway.config import LimitsConfig
from gateway.events import ClientRequest
from gateway.limits import ADDRESS, RateLimits, budget_of

_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Views whose requests carry no principal's token: a signed URL is its own credential.
BEARERLESS = frozenset({"content.signed"})
CLIENT_ID_HEADER = "X-Client-Request-Id"


def request_meta() -> RequestMeta:
    """The current request's metadata (set before any view runs)."""
    meta: RequestMeta = g.meta
    return meta


def rate_limits() -> RateLimits:
    found: RateLimits = current_app.extensions["gateway.limits"]
    return found


def budget() -> str:
    """The rate budget the current request counts against."""
    return budget_of(request.method, request.endpoint)


def _begin() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.meta = ClientRequest(
        request_id="req_" + secrets.token_hex(12),
        ip=request.remote_addr,
        client_request_id=given if _CLIENT_ID.fullmatch(given) else None,
        bearerless=request.endpoint in BEARERLESS,
    )
    rate_limits().hit(ADDRESS, budget(), request.remote_addr or "-")


def _finish(response: Response) -> Response:
    meta: RequestMeta | None = g.get("meta")
    response.headers["X-Request-Id"] = meta.request_id if meta is not None else ""
    if isinstance(meta, ClientRequest) and meta.client_request_id is not None:
        response.headers[CLIENT_ID_HEADER] = meta.client_request_id
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    metrics.observe_response(request, response)
    return response


def init_app(app: Flask, limits: LimitsConfig) -> None:
    app.extensions["gateway.limits"] = RateLimits(limits)
    app.before_request(_begin)
    app.after_request(_finish)
