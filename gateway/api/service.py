"""Service routes: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from gateway import metrics
from gateway.api.common import gw

bp = Blueprint("service", __name__)
log = logging.getLogger("gateway.readyz")


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> Any:
    runtime = gw()
    checks: dict[str, str] = {}
    try:
        with runtime.db.session() as session:
            session.execute(text("SELECT 1"))
            from gateway.audit import store as audit_store

            audit_store.size(session)
        checks["metadata"] = checks["audit_log"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("metadata not ready: %s", type(exc).__name__)
        checks.setdefault("metadata", "unavailable")
        checks.setdefault("audit_log", "unavailable")
    try:
        runtime.store.check_writable()
        checks["object_store"] = "ok"
    except Exception as exc:  # noqa: BLE001
        log.warning("object store not ready: %s", type(exc).__name__)
        checks["object_store"] = "unavailable"
    try:
        runtime.master_key  # noqa: B018 - loading it is the check
        runtime.audit_signer  # noqa: B018
        checks["keys"] = "ok"
    except Exception:  # noqa: BLE001
        checks["keys"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def prometheus() -> Response:
    return Response(metrics.render(), mimetype="text/plain; version=0.0.4")


@bp.get("/v1/openapi.json")
def openapi() -> Any:
    from gateway.api.openapi import document

    return document()
