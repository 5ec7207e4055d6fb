"""Every problem the API answers, rendered in one place as RFC 9457 ``application/problem+json``.

Errors carry their own status, type and headers (:mod:`gateway.errors`); this module only
renders them. Anonymous 401s, and signed URLs whose signature fails, are counted in
``/metrics`` here, never logged in the audit log.
Anything unexpected becomes a 500 that names the request id and logs the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway import metrics
from gateway.errors import Forbidden, GatewayError, Unauthorized
from gateway.events import ClientRequest

log = logging.getLogger("gateway")


def problem_response(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(dict(body))
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _request_id() -> str:
    meta = g.get("meta")
    return meta.request_id if meta is not None else "-"


def gateway_error(exc: GatewayError) -> Response:
    if isinstance(exc, Unauthorized):
        metrics.UNAUTHENTICATED.inc()
    meta = g.get("meta")
    bearerless = isinstance(meta, ClientRequest) and meta.bearerless
    # A signed URL whose signature fails never reaches the log's refusals (which count theirs).
    if bearerless and isinstance(exc, Forbidden) and "reason" not in exc.extra:
        metrics.anonymous_refusal("bad signature")
    if exc.status >= 500:
        log.error("request %s failed: %s", _request_id(), exc.detail)
    return problem_response(exc.problem(), exc.status, exc.headers)


def http_error(exc: HTTPException) -> Response:
    """Werkzeug's own answers (no route, method not allowed, ...) as problems too."""
    status = exc.code or 500
    detail = exc.description or exc.name
    if status == 405:
        detail = f"method {request.method} is not allowed on {request.path}"
    elif status == 404:
        detail = f"no route {request.path}"
    body = {"type": "about:blank", "title": exc.name, "status": status, "detail": detail}
    headers = {}
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    return problem_response(body, status, headers)


def unexpected_error(exc: Exception) -> Response:
    log.exception("request %s failed unexpectedly", _request_id(), exc_info=exc)
    body = {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": f"an internal error occurred; quote request id {_request_id()}",
    }
    return problem_response(body, 500)


def init_app(app: Flask) -> None:
    app.register_error_handler(GatewayError, gateway_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
