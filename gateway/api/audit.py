"""Audit log routes: entries, checkpoint, inclusion and consistency proofs, verifier key."""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Response, request

from gateway import policy
from gateway.api.common import actor, authenticate_request, authorize, gw
from gateway.errors import BadRequest

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


@bp.before_request
def _auth() -> None:
    if request.endpoint != "audit.key":
        authenticate_request()


def _int_arg(name: str, default: int | None = None, minimum: int = 0) -> int:
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter {name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer") from None
    if value < minimum:
        raise BadRequest(f"query parameter {name} must be at least {minimum}")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@bp.get("/entries")
def entries() -> Any:
    from gateway.audit import store

    who = actor()
    everything = policy.decide(who.role, "audit.read_all") is policy.Decision.ALLOW
    if not everything:
        authorize("audit.read_own", what="the audit log")
    start = _int_arg("start", 0)
    limit = _int_arg("limit", 100, minimum=1)
    if limit > 1000:
        raise BadRequest("limit must be at most 1000")
    cursor = request.args.get("cursor")
    if cursor:
        try:
            start = int(cursor)
        except ValueError:
            raise BadRequest("cursor is not one this gateway issued") from None
    filters: dict[str, str | None] = {
        k: request.args.get(k) or None for k in ("artifact", "actor", "action")
    }
    with gw().db.session() as session:
        rows = store.entries(
            session,
            start=start,
            limit=limit + 1,
            subject_org=None if everything else who.org,
            artifact=filters["artifact"],
            actor=filters["actor"],
            action=filters["action"],
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [{"index": e.index, "leaf": _b64(e.leaf), "entry": e.entry()} for e in rows],
        "next_cursor": str(rows[-1].index + 1) if more and rows else None,
    }


def _may_prove() -> None:
    authorize("audit.proof", what="audit proofs")


@bp.get("/checkpoint")
def checkpoint() -> Response:
    from gateway.audit import store

    _may_prove()
    runtime = gw()
    with runtime.db.session() as session:
        text = store.sign_checkpoint(session, runtime.audit_signer, runtime.config.audit.origin)
    return Response(text, mimetype="text/plain; charset=utf-8")


@bp.get("/proof/inclusion")
def inclusion() -> Any:
    from gateway.audit import store

    _may_prove()
    index = _int_arg("index")
    with gw().db.session() as session:
        size = _int_arg("size", store.size(session), minimum=1)
        hashes = store.inclusion_proof(session, index, size)  # the store checks both bounds
    return {"index": index, "size": size, "hashes": [_b64(h) for h in hashes]}


@bp.get("/proof/consistency")
def consistency() -> Any:
    from gateway.audit import store

    _may_prove()
    old = _int_arg("old", minimum=1)
    with gw().db.session() as session:
        new = _int_arg("new", store.size(session), minimum=1)
        hashes = store.consistency_proof(session, old, new)  # the store checks both bounds
    return {"old": old, "new": new, "hashes": [_b64(h) for h in hashes]}


@bp.get("/key")
def key() -> Response:
    runtime = gw()
    return Response(runtime.audit_signer.verifier_key + "\n", mimetype="text/plain; charset=utf-8")
