"""The verification material a lab registers for its OpenSSF model signatures (``model.sig``).

A lab principal registers an elliptic-curve public key (PEM; P-256 or P-384, the curves
OpenSSF Model Signing verifies with); verifiers fetch an organisation's keys and check a
restored directory's ``model.sig`` under them (:mod:`gateway.tree.oms`). A key is stored
re-encoded (SubjectPublicKeyInfo, PEM) with its fingerprint, the SHA-256 of its DER, and
is registered once per organisation. A registration and its ``identity.oms_key.register``
entry commit in one transaction, or neither does (503).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from sqlalchemy import select

from gateway import events
from gateway.caller import Caller
from gateway.errors import BadRequest
from gateway.models import OmsKey, Principal, new_id
from gateway.runtime import Runtime
from gateway.services.identity import get_org

CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
MAX_PEM = 4096  # a P-384 SubjectPublicKeyInfo is about 215 characters of PEM
REGISTER = "identity.oms_key.register"


@dataclass(frozen=True)
class OrgOmsKey:
    """An OMS public key an organisation registered, and the name of the principal who did."""

    public_key: str
    fingerprint: str
    curve: str
    principal: str
    created_at: datetime


def parse_public_key(pem: str) -> tuple[str, str, str]:
    """``(canonical PEM, fingerprint, curve)`` of an EC P-256/P-384 public key, or 400."""
    if len(pem) > MAX_PEM:
        raise BadRequest(f"public_key must be a PEM public key of at most {MAX_PEM} characters")
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadRequest(f"public_key is not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BadRequest(
            f"public_key is a {type(key).__name__.removeprefix('_')}, not an elliptic-curve key: "
            "OpenSSF Model Signing verifies with P-256 or P-384 keys"
        )
    if key.curve.name not in CURVES:
        raise BadRequest(
            f"public_key is on curve {key.curve.name}: OpenSSF Model Signing keys registered "
            "here are P-256 or P-384"
        )
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    canonical = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return canonical, hashlib.sha256(der).hexdigest(), CURVES[key.curve.name]


def register(rt: Runtime, caller: Caller, pem: str) -> OrgOmsKey:
    """Register ``pem`` for the caller's org; a key the org already registered is returned.

    Only a new registration is recorded: registering the same key again changes nothing.
    """
    canonical, fingerprint, curve = parse_public_key(pem)
    actor = caller.actor
    with events.fail_closed(rt) as session:
        key = session.scalars(
            select(OmsKey).where(OmsKey.org == actor.org, OmsKey.fingerprint == fingerprint)
        ).first()
        if key is None:
            key = OmsKey(
                id=new_id("oms"),
                org=actor.org,
                principal_id=actor.id,
                public_key=canonical,
                fingerprint=fingerprint,
                created_at=rt.now(),
            )
            session.add(key)
            session.flush()
            events.record(
                rt,
                session,
                REGISTER,
                caller,
                subject_org=actor.org,
                details={"fingerprint": fingerprint, "curve": curve, "key": key.id},
            )
        return OrgOmsKey(key.public_key, key.fingerprint, curve, actor.name, key.created_at)


def org_keys(rt: Runtime, org: str) -> list[OrgOmsKey]:
    """The OMS keys in force of ``org``, oldest first, each with its principal's name."""
    with rt.db.session() as session:
        get_org(session, org)
        rows = session.execute(
            select(OmsKey, Principal.name)
            .outerjoin(Principal, Principal.id == OmsKey.principal_id)
            .where(OmsKey.org == org, OmsKey.revoked_at.is_(None))
            .order_by(OmsKey.created_at, OmsKey.id)
        ).all()
    return [
        OrgOmsKey(
            key.public_key,
            key.fingerprint,
            parse_public_key(key.public_key)[2],
            key.principal_id if name is None else name,
            key.created_at,
        )
        for key, name in rows
    ]
