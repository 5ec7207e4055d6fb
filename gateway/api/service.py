"""Service routes: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from gateway import metrics
from gateway.api import openapi
from gateway.api.context import runtime
from gateway.audit import store as audit_store

bp = Blueprint("service", __name__)
log = logging.getLogger("gateway.readyz")


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    rt = runtime()
    checks: dict[str, str] = {}
    # Any failure at all means not ready: each check catches everything, and says only its kind.
    try:
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
            audit_store.size(session)
        checks["metadata"] = checks["audit_log"] = "ok"
    except Exception as exc:
        log.warning("metadata not ready: %s", type(exc).__name__)
        checks.setdefault("metadata", "unavailable")
        checks.setdefault("audit_log", "unavailable")
    try:
        rt.store.check_writable()
        checks["object_store"] = "ok"
    except Exception as exc:
        log.warning("object store not ready: %s", type(exc).__name__)
        checks["object_store"] = "unavailable"
    try:
        rt.master_key  # noqa: B018 - loading it is the check
        rt.audit_signer  # noqa: B018
        checks["keys"] = "ok"
    except Exception:
        checks["keys"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def prometheus() -> ResponseReturnValue:
    return Response(metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/v1/openapi.json")
def openapi_document() -> ResponseReturnValue:
    return openapi.document()
