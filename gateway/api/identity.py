"""Identity routes: who am I, my recipient, signing and OMS keys, an org's signing and OMS keys."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.clock import rfc3339
from gateway.errors import BadRequest
from gateway.models import SigningKey
from gateway.services import identity, omskeys

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
    body = inputs.json_body()
    public_key, proof = inputs.text(body, "public_key"), inputs.text(body, "proof")
    return shapes.profile(identity.register_signing_key(rt, who, public_key, proof))


def _key(k: SigningKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "public_key": k.public_key,
        "principal": k.principal_id,
        "created_at": rfc3339(k.created_at),
        "revoked_at": rfc3339(k.revoked_at),
    }


@bp.get("/me/signing-keys")
def my_signing_keys() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "me.signing_key", what="signing keys")
    return {"items": [_key(k) for k in identity.own_signing_keys(rt, who)]}


@bp.delete("/me/signing-keys/<key_id>")
def revoke_signing_key(key_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    found = identity.find_signing_key(rt, key_id)
    key = authz.require_found(rt, who, "signing_key.revoke", found, what=f"signing key {key_id}")
    identity.revoke_signing_key(rt, who, key)
    return "", 204


@bp.get("/orgs/<org>/signing-keys")
def signing_keys(org: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "org.signing_keys", what="signing keys")
    return {
        "items": [shapes.signing_key(k) for k in identity.org_signing_keys(rt, org)],
        "revoked": [
            {**shapes.signing_key(k), "revoked_at": rfc3339(k.revoked_at)}
            for k in identity.org_signing_keys(rt, org, revoked=True)
        ],
    }


@bp.put("/me/oms-key")
def put_oms_key() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "me.oms_key", what="an OpenSSF model signing key")
    body = inputs.json_body()
    given = [k for k in (omskeys.PUBLIC_KEY, omskeys.CHAIN) if k in body]
    if len(given) != 1:
        raise BadRequest("give exactly one of public_key (PEM) or certificate_chain (PEM)")
    identity = inputs.text(body, "identity") if body.get("identity") is not None else None
    return _oms_key(omskeys.register(rt, who, inputs.text(body, given[0]), given[0], identity))


@bp.delete("/me/oms-key/<key_id>")
def revoke_oms_key(key_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "me.oms_key", what="an OpenSSF model signing key")
    omskeys.revoke(rt, who, key_id)
    return "", 204


@bp.get("/orgs/<org>/oms-keys")
def oms_keys(org: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    # Whoever may check an org's manifests may check its model signatures.
    authz.require(rt, who, "org.signing_keys", what="OpenSSF model signing keys")
    return {
        "items": [_oms_key(k) for k in omskeys.org_keys(rt, org)],
        "revoked": [_oms_key(k) for k in omskeys.org_keys(rt, org, revoked=True)],
    }


def _oms_key(k: omskeys.OrgOmsKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "kind": k.kind,
        k.kind: k.pem,
        "fingerprint": k.fingerprint,
        "curve": k.curve,
        "identity": k.identity,
        "principal": k.principal,
        "created_at": rfc3339(k.created_at),
        "revoked_at": rfc3339(k.revoked_at),
    }
