"""Readiness: whether the metadata database, the audit log, the object store, the keys and custody are usable."""

from __future__ import annotations

import logging

from sqlalchemy import text

from gateway.audit import store as audit_store
from gateway.runtime import Runtime

log = logging.getLogger("gateway.readyz")

OK, UNAVAILABLE = "ok", "unavailable"


def checks(rt: Runtime) -> dict[str, str]:
    """Each dependency, ``ok`` or ``unavailable``; a failure is logged by its kind only."""
    found: dict[str, str] = {}
    # Any failure at all means not ready: each check catches everything.
    try:
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
            audit_store.size(session)
        found["metadata"] = found["audit_log"] = OK
    except Exception as exc:
        log.warning("metadata not ready: %s: %s", type(exc).__name__, exc)
        found.setdefault("metadata", UNAVAILABLE)
        found.setdefault("audit_log", UNAVAILABLE)
    try:
        rt.store.check_writable()
        found["object_store"] = OK
    except Exception as exc:
        log.warning("object store not ready: %s: %s", type(exc).__name__, exc)
        found["object_store"] = UNAVAILABLE
    try:
        rt.audit_signer  # noqa: B018 - loading it is the check
        found["keys"] = OK
    except Exception:
        found["keys"] = UNAVAILABLE
    try:
        rt.custody.check()
        found["custody"] = OK
    except Exception as exc:
        log.warning("custody not ready: %s: %s", type(exc).__name__, exc)
        found["custody"] = UNAVAILABLE
    return found
