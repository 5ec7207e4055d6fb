"""Audit log routes: entries, checkpoint, inclusion and consistency proofs, verifier key."""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, problems, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.audit import store
from gateway.errors import BadRequest
from gateway.services import auditlog

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


@bp.before_request
def _auth() -> None:
    if request.endpoint != "audit.key":  # the verifier key is public
        authenticate_request()


@bp.errorhandler(store.ProofRangeError)
def _out_of_range(exc: store.ProofRangeError) -> Response:
    """A proof or position outside the log is the client's to fix: 400."""
    return problems.gateway_error(BadRequest(exc.detail))


@bp.get("/entries")
def entries() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.read_own", what="the audit log")
    with rt.db.session() as session:
        found = auditlog.visible(session, who.actor, inputs.entry_filters(), inputs.page_request())
        return shapes.page(found, shapes.entry)


def _may_prove() -> None:
    authz.require(runtime(), caller(), "audit.proof", what="audit proofs")


@bp.get("/checkpoint")
def checkpoint() -> ResponseReturnValue:
    _may_prove()
    rt = runtime()
    with rt.db.session() as session:
        text = store.sign_checkpoint(session, rt.audit_signer, rt.config.audit.origin)
    return Response(text, mimetype="text/plain; charset=utf-8")


@bp.get("/proof/inclusion")
def inclusion() -> ResponseReturnValue:
    _may_prove()
    index = inputs.query_int("index")
    with runtime().db.session() as session:
        size = inputs.query_int("size", store.size(session), minimum=1)
        hashes = store.inclusion_proof(session, index, size)  # the store checks both bounds
    return {"index": index, "size": size, "hashes": [shapes.b64(h) for h in hashes]}


@bp.get("/proof/consistency")
def consistency() -> ResponseReturnValue:
    _may_prove()
    old = inputs.query_int("old", minimum=1)
    with runtime().db.session() as session:
        new = inputs.query_int("new", store.size(session), minimum=1)
        hashes = store.consistency_proof(session, old, new)  # the store checks both bounds
    return {"old": old, "new": new, "hashes": [shapes.b64(h) for h in hashes]}


@bp.get("/key")
def key() -> ResponseReturnValue:
    signer = runtime().audit_signer
    return Response(signer.verifier_key + "\n", mimetype="text/plain; charset=utf-8")
