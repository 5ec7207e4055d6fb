"""Access routes: requests (evaluator asks, lab decides), grants, revocation, withdrawal."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.services import access, artifacts, grants, lab_custody, lifecycle
from gateway.services.artifacts import require_available

bp = Blueprint("access", __name__, url_prefix="/v1")
bp.before_request(authenticate_request)


@bp.post("/artifacts/<artifact_id>/access-requests")
def create_request(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    artifact = artifacts.get(rt, who, artifact_id, "access.request")
    new = inputs.new_request(inputs.json_body())
    return shapes.request(access.create_request(rt, who, artifact, new)), 201


@bp.get("/access-requests")
def list_requests() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "access.list", what="access requests")
    found = access.requests_visible(rt, who.actor, inputs.list_filters(), inputs.page_request())
    return shapes.page(found, shapes.request)


@bp.get("/access-requests/<request_id>")
def show_request(request_id: str) -> ResponseReturnValue:
    return shapes.request(access.get_request(runtime(), caller(), request_id, "access.read"))


@bp.get("/access-requests/<request_id>/custody")
def approval_material(request_id: str) -> ResponseReturnValue:
    """Lab custody: the stored header and the grantee's recipient, to make its header from."""
    rt, who = runtime(), caller()
    req = access.get_request(rt, who, request_id, "access.decide")
    require_available(rt, who, "access.decide", req.artifact)
    return shapes.approval_material(lab_custody.approval_material(rt, req))


@bp.post("/access-requests/<request_id>/approve")
def approve(request_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    req = access.get_request(rt, who, request_id, "access.decide")
    grant = access.approve(rt, who, req, inputs.approval(inputs.json_body(required=False)))
    return shapes.grant(grant, rt.now()), 201


@bp.post("/access-requests/<request_id>/deny")
def deny(request_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    req = access.get_request(rt, who, request_id, "access.decide")
    return shapes.request(
        access.deny(rt, who, req, inputs.denial(inputs.json_body(required=False)))
    )


@bp.get("/grants")
def list_grants() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "grant.list", what="grants")
    now = rt.now()
    found = grants.grants_visible(rt, who.actor, inputs.list_filters(), inputs.page_request())
    return shapes.page(found, lambda g: shapes.grant(g, now))


@bp.delete("/grants/<grant_id>")
def revoke(grant_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    grants.revoke(rt, who, grants.get_grant(rt, who, grant_id, "grant.revoke"))
    return "", 204


@bp.delete("/artifacts/<artifact_id>")
def withdraw(artifact_id: str) -> ResponseReturnValue:
    """204 once withdrawn and deleted; 202 when withdrawn (shredded) but the deletion is pending."""
    rt, who = runtime(), caller()
    done = lifecycle.withdraw(rt, who, artifacts.get(rt, who, artifact_id, "artifact.withdraw"))
    if done.deleted:
        return "", 204
    return {"artifact": done.artifact, "state": done.state, "deletion": "pending"}, 202
