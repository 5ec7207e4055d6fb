"""Service routes: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from gateway import metrics
from gateway.api import openapi
from gateway.api.context import runtime
from gateway.services import readiness

bp = Blueprint("service", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks = readiness.checks(runtime())
    ready = all(v == readiness.OK for v in checks.values())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def prometheus() -> ResponseReturnValue:
    return Response(metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/v1/openapi.json")
def openapi_document() -> ResponseReturnValue:
    return openapi.document()
