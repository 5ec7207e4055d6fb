"""Identity routes: who am I, my recipient and signing key, an org's signing keys."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from gateway.api.common import actor, authenticate_request, authorize, field, gw, json_body
from gateway.clock import rfc3339
from gateway.errors import NotFound
from gateway.models import Principal, SigningKey
from gateway.services import identity

bp = Blueprint("identity", __name__, url_prefix="/v1")
bp.before_request(authenticate_request)


def _me(principal: Principal | None, signing_key: SigningKey | None) -> dict[str, Any]:
    if principal is None:
        raise NotFound("the principal of this token no longer exists")
    return {
        "name": principal.name,
        "org": principal.org,
        "role": principal.role,
        "recipient": principal.recipient,
        "signing_key": signing_key.public_key if signing_key else None,
    }


def _latest_key(session: Any, principal_id: str) -> SigningKey | None:
    from sqlalchemy import select

    return session.scalars(
        select(SigningKey)
        .where(SigningKey.principal_id == principal_id, SigningKey.revoked_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.id.desc())
    ).first()


@bp.get("/me")
def me() -> Any:
    with gw().db.session() as session:
        principal = session.get(Principal, actor().id)
        return _me(principal, _latest_key(session, actor().id))


@bp.put("/me/recipient")
def put_recipient() -> Any:
    authorize("me.recipient", what="a recipient")
    body = json_body()
    recipient = field(body, "recipient", str)
    runtime = gw()
    with runtime.db.session() as session:
        identity.set_recipient(session, actor(), recipient)
        principal = session.get(Principal, actor().id)
        return _me(principal, _latest_key(session, actor().id))


@bp.put("/me/signing-key")
def put_signing_key() -> Any:
    authorize("me.signing_key", what="a signing key")
    body = json_body()
    public_key = field(body, "public_key", str)
    runtime = gw()
    with runtime.db.session() as session:
        key = identity.register_signing_key(session, actor(), public_key, runtime.now())
        principal = session.get(Principal, actor().id)
        return _me(principal, key)


@bp.get("/orgs/<org>/signing-keys")
def signing_keys(org: str) -> Any:
    authorize("org.signing_keys", what="signing keys")
    with gw().db.session() as session:
        keys = identity.org_signing_keys(session, org)
        principals = {p.id: p.name for p in session.query(Principal).filter(Principal.org == org)}
        return {
            "items": [
                {
                    "public_key": k.public_key,
                    "principal": principals.get(k.principal_id, k.principal_id),
                    "created_at": rfc3339(k.created_at),
                }
                for k in keys
            ]
        }
