"""The application factory: it assembles, and does nothing else."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway import metrics
from gateway.clock import Clock
from gateway.config import Config, load
from gateway.errors import GatewayError, Unauthorized
from gateway.runtime import Gateway

log = logging.getLogger("gateway")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(
    config: Config | None = None, *, clock: Clock | None = None, gateway: Gateway | None = None
) -> Flask:
    config = config or load()
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = None  # parts are large; each view bounds its own body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["gateway"] = gateway or Gateway(config, clock=clock)

    app.before_request(_assign_request_id)
    app.after_request(_finish_response)
    app.register_error_handler(GatewayError, _gateway_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)

    from gateway.api import access, artifacts, audit, content, identity, service, uploads

    for module in (service, identity, uploads, artifacts, access, content, audit):
        app.register_blueprint(module.bp)
    return app


def _assign_request_id() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.match(given) else "req_" + secrets.token_hex(12)


def _finish_response(response: Response) -> Response:
    response.headers["X-Request-Id"] = getattr(g, "request_id", "")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    metrics.observe_response(request, response)
    return response


def problem_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _gateway_error(exc: GatewayError) -> Response:
    headers = {}
    if isinstance(exc, Unauthorized):
        metrics.UNAUTHENTICATED.inc()
        headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    if exc.status >= 500:
        log.error("request %s failed: %s", getattr(g, "request_id", "-"), exc.detail)
    return problem_response(exc.problem(), exc.status, headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = exc.description or exc.name
    if status == 405:
        detail = f"method {request.method} is not allowed on {request.path}"
    elif status == 404:
        detail = f"no route {request.path}"
    body = {
        "type": "about:blank",
        "title": exc.name,
        "status": status,
        "detail": detail,
    }
    headers = {}
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return problem_response(body, status, headers)


def _unexpected_error(exc: Exception) -> Response:
    log.exception("request %s failed unexpectedly", getattr(g, "request_id", "-"))
    body = {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": f"an internal error occurred; quote request id {getattr(g, 'request_id', '-')}",
    }
    return problem_response(body, 500)
