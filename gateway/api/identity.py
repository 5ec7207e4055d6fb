"""Identity routes: who am I, my recipient and signing key, an org's signing keys."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.services import identity

bp = Blueprint("identity", __name__, url_prefix="/v1")
bp.before_request(authenticate_request)


@bp.get("/me")
def me() -> ResponseReturnValue:
    return shapes.profile(identity.profile(runtime(), caller()))


@bp.put("/me/recipient")
def put_recipient() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "me.recipient", what="a recipient")
    recipient = inputs.text(inputs.json_body(), "recipient")
    return shapes.profile(identity.set_recipient(rt, who, recipient))


@bp.put("/me/signing-key")
def put_signing_key() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "me.signing_key", what="a signing key")
    public_key = inputs.text(inputs.json_body(), "public_key")
    return shapes.profile(identity.register_signing_key(rt, who, public_key))


@bp.get("/orgs/<org>/signing-keys")
def signing_keys(org: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "org.signing_keys", what="signing keys")
    return {"items": [shapes.signing_key(k) for k in identity.org_signing_keys(rt, org)]}
