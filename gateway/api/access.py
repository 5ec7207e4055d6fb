"""Access routes: requests (evaluator asks, lab decides), grants, revocation, withdrawal."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from gateway.api.artifacts import load_artifact
from gateway.api.common import (
    actor,
    authenticate_request,
    authorize,
    gw,
    json_body,
    page,
    page_args,
)
from gateway.errors import NotFound
from gateway.models import AccessRequest, Artifact, Grant
from gateway.services import access

bp = Blueprint("access", __name__, url_prefix="/v1")
bp.before_request(authenticate_request)


def _artifact(artifact_id: str, action: str) -> Artifact:
    artifact = load_artifact(artifact_id, action)
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} was not found")
    return artifact


def _owns(artifact: Artifact, principal_id: str) -> bool:
    """A request or grant is "own" for the lab owning its artifact and for its evaluator."""
    who = actor()
    if who.role == "lab":
        return artifact.org == who.org
    if who.role == "evaluator":
        return principal_id == who.id
    return True


def _request(request_id: str, action: str) -> tuple[AccessRequest, Artifact]:
    with gw().db.session() as session:
        req = session.get(AccessRequest, request_id)
        artifact = session.get(Artifact, req.artifact_id) if req else None
    if req is None or artifact is None:
        authorize(action, False, what=f"access request {request_id}")
        raise NotFound(f"access request {request_id} was not found")
    authorize(
        action,
        _owns(artifact, req.principal_id),
        what=f"access request {request_id}",
        artifact=artifact.id,
        subject_org=artifact.org,
    )
    return req, artifact


def _filters(*names: str) -> dict[str, str]:
    return {n: request.args[n] for n in names if request.args.get(n)}


@bp.post("/artifacts/<artifact_id>/access-requests")
def create_request(artifact_id: str) -> Any:
    artifact = _artifact(artifact_id, "access.request")
    row = access.create_request(gw(), actor(), artifact, json_body())
    return access.request_json(row), 201


@bp.get("/access-requests")
def list_requests() -> Any:
    authorize("access.list", what="access requests")
    limit, offset = page_args()
    with gw().db.session() as session:
        rows, more = access.requests_visible(
            session, actor(), limit, offset, _filters("artifact", "state")
        )
        return page([access.request_json(r) for r in rows], limit, offset, more)


@bp.get("/access-requests/<request_id>")
def show_request(request_id: str) -> Any:
    req, _ = _request(request_id, "access.read")
    return access.request_json(req)


@bp.post("/access-requests/<request_id>/approve")
def approve(request_id: str) -> Any:
    req, artifact = _request(request_id, "access.decide")
    grant = access.approve(gw(), actor(), req, artifact, json_body(required=False))
    return access.grant_json(grant, gw().now()), 201


@bp.post("/access-requests/<request_id>/deny")
def deny(request_id: str) -> Any:
    req, artifact = _request(request_id, "access.decide")
    return access.request_json(access.deny(gw(), actor(), req, artifact, json_body(required=False)))


@bp.get("/grants")
def list_grants() -> Any:
    authorize("grant.list", what="grants")
    limit, offset = page_args()
    now = gw().now()
    with gw().db.session() as session:
        rows, more = access.grants_visible(session, actor(), limit, offset, _filters("artifact"))
        return page([access.grant_json(g, now) for g in rows], limit, offset, more)


@bp.delete("/grants/<grant_id>")
def revoke(grant_id: str) -> Any:
    with gw().db.session() as session:
        grant = session.get(Grant, grant_id)
        artifact = session.get(Artifact, grant.artifact_id) if grant else None
    if grant is None or artifact is None:
        authorize("grant.revoke", False, what=f"grant {grant_id}")
        raise NotFound(f"grant {grant_id} was not found")
    authorize(
        "grant.revoke",
        _owns(artifact, grant.grantee_id),
        what=f"grant {grant_id}",
        artifact=artifact.id,
        grant=grant.id,
        subject_org=artifact.org,
    )
    access.revoke(gw(), actor(), grant, artifact)
    return "", 204


@bp.delete("/artifacts/<artifact_id>")
def withdraw(artifact_id: str) -> Any:
    artifact = _artifact(artifact_id, "artifact.withdraw")
    access.withdraw(gw(), actor(), artifact)
    return "", 204
