"""Artifact routes: list and read, scoped by role."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.services import artifacts

bp = Blueprint("artifacts", __name__, url_prefix="/v1/artifacts")
bp.before_request(authenticate_request)


@bp.get("")
def index() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "artifact.list", what="artifacts")
    return shapes.page(artifacts.visible(rt, who.actor, inputs.page_request()), shapes.artifact)


@bp.get("/<artifact_id>")
def show(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    artifact = artifacts.get(rt, who, artifact_id, "artifact.read")
    return shapes.artifact(artifacts.read(rt, who, artifact))
