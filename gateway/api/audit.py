"""Audit log routes: entries, checkpoint, inclusion and consistency proofs, verifier key."""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, problems, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.audit.store import ProofRangeError
from gateway.errors import BadRequest
from gateway.services import auditlog

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


@bp.before_request
def _auth() -> None:
    if request.endpoint != "audit.key":  # the verifier key is public
        authenticate_request()


@bp.errorhandler(ProofRangeError)
def _out_of_range(exc: ProofRangeError) -> Response:
    """A proof or size outside the log is the client's to fix: 400."""
    return problems.gateway_error(BadRequest(exc.detail))


@bp.get("/entries")
def entries() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.read_own", what="the audit log")
    filters = replace(
        inputs.entry_filters(),
        concerning=inputs.query_text("concerning"),
        with_proofs=_flag("with_proofs"),
    )
    if filters.with_proofs:
        _may_prove()
        filters = replace(filters, size=_optional_size("size"))
    elif "size" in request.args:
        raise BadRequest("query parameter size needs with_proofs=1")
    found = auditlog.visible(rt, who.actor, filters, inputs.page_request())
    body = shapes.page(found.page, shapes.entry)
    if found.size is not None:
        body["size"] = found.size
        for item in body["items"]:
            item["proof"] = [shapes.b64(h) for h in found.proofs[item["index"]]]
    return body


def _flag(name: str) -> bool:
    raw = request.args.get(name, "0")
    if raw not in ("0", "1"):
        raise BadRequest(f"query parameter {name} must be 0 or 1")
    return raw == "1"


def _may_prove() -> None:
    authz.require(runtime(), caller(), "audit.proof", what="audit proofs")


@bp.get("/checkpoint")
def checkpoint() -> ResponseReturnValue:
    _may_prove()
    return Response(auditlog.checkpoint(runtime()), mimetype="text/plain; charset=utf-8")


def _optional_size(name: str) -> int | None:
    return inputs.query_int(name, minimum=1) if name in request.args else None


@bp.get("/proof/inclusion")
def inclusion() -> ResponseReturnValue:
    _may_prove()
    index = inputs.query_int("index")
    proof = auditlog.inclusion(runtime(), index, _optional_size("size"))
    return {"index": index, "size": proof.size, "hashes": [shapes.b64(h) for h in proof.hashes]}


@bp.get("/proof/consistency")
def consistency() -> ResponseReturnValue:
    _may_prove()
    old = inputs.query_int("old", minimum=1)
    proof = auditlog.consistency(runtime(), old, _optional_size("new"))
    return {"old": old, "new": proof.size, "hashes": [shapes.b64(h) for h in proof.hashes]}


@bp.get("/key")
def key() -> ResponseReturnValue:
    signer = runtime().audit_signer
    return Response(signer.verifier_key + "\n", mimetype="text/plain; charset=utf-8")
