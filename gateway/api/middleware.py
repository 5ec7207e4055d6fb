"""Per request: its id and metadata before the view, the id and security headers on the answer.

A client may choose the request id (``X-Request-Id``, up to 64 characters of
``[A-Za-z0-9._-]``); otherwise the gateway makes one. Every answer carries it, and so does
every audit entry of the request (through :class:`gateway.caller.RequestMeta`).
"""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, g, request

from gateway import metrics
from gateway.caller import RequestMeta

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_meta() -> RequestMeta:
    """The current request's metadata (set before any view runs)."""
    meta: RequestMeta = g.meta
    return meta


def _begin() -> None:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else "req_" + secrets.token_hex(12)
    g.meta = RequestMeta(request_id=request_id, ip=request.remote_addr)


def _finish(response: Response) -> Response:
    meta: RequestMeta | None = g.get("meta")
    response.headers["X-Request-Id"] = meta.request_id if meta is not None else ""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    metrics.observe_response(request, response)
    return response


def init_app(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_finish)
