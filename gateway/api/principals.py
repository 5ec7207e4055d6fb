"""Principal routes: who ``prn_...`` ids are, one or a batch, within the caller's view."""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.services import principals

bp = Blueprint("principals", __name__, url_prefix="/v1/principals")
bp.before_request(authenticate_request)


@bp.get("")
def lookup() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "principal.read", what="principals")
    wanted = principals.Lookup(tuple(request.args.getlist("id")))
    return {"items": [shapes.principal(p) for p in principals.names(rt, who, wanted)]}


@bp.get("/<principal_id>")
def show(principal_id: str) -> ResponseReturnValue:
    return shapes.principal(principals.get(runtime(), caller(), principal_id))
