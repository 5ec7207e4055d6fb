"""The verification material a lab registers for its OpenSSF model signatures (``model.sig``).

A lab principal registers either an elliptic-curve public key (PEM; P-256 or P-384, the
curves OpenSSF Model Signing verifies with) or a certificate chain (PEM: its CA root and
any intermediates), under which ``model.sig`` files made with ``model-signing``'s
certificate signer verify, optionally with the signer identity the signing certificate
must carry (a SAN of the identity's kind, or a CN when it has no SANs:
:func:`gateway.tree.oms.identity_kind`); verifiers fetch an organisation's
material and check a restored directory's ``model.sig`` under it (:mod:`gateway.tree.oms`).
Material is stored re-encoded (SubjectPublicKeyInfo PEM, or the chain in canonical form:
each certificate once, ordered by its own SHA-256, :func:`gateway.tree.oms.chain_certificates`)
with its fingerprint, the SHA-256 of its DER (of the canonical certificates' DER one after
another, for a chain), and is registered once per organisation; which kind it is follows
from the PEM, so no column says it. A lab revokes its material for good (``revoked_at``):
it is then listed apart, so a verifier can say that a signature was made under revoked
material rather than that it does not verify. A chain's revocation revokes each of its
certificates that no chain in force also holds; a chain holding a certificate revoked so,
or a certificate of a revoked certificate's public key (the key certified again, under
any name, or the same certificate re-encoded), is refused (409), so the set of revoked
certificates and keys only grows. A registration or a
revocation and its ``identity.oms_key.register`` or ``identity.oms_key.revoke`` entry
commit in one transaction, or neither does (503).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from sqlalchemy import select, update

from gateway import events
from gateway.caller import Caller
from gateway.db import cas_update
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.models import OmsKey, Principal, new_id
from gateway.runtime import Runtime
from gateway.services.identity import get_org
from gateway.tree import oms

CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
MAX_PEM = 4096  # a P-384 SubjectPublicKeyInfo is about 215 characters of PEM
MAX_CHAIN_PEM = 32768
MAX_CHAIN = 8
MAX_IDENTITY = 255  # an e-mail address is at most 254 characters
REGISTER = "identity.oms_key.register"
REVOKE = "identity.oms_key.revoke"
PUBLIC_KEY, CHAIN = "public_key", "certificate_chain"


@dataclass(frozen=True)
class OrgOmsKey:
    """OMS material an organisation registered, and the name of the principal who did.

    ``pem`` is a public key (``kind`` ``public_key``, ``curve`` its curve) or a certificate
    chain (``kind`` ``certificate_chain``, ``curve`` None).
    """

    id: str
    kind: str
    pem: str
    fingerprint: str
    curve: str | None
    principal: str
    created_at: datetime
    revoked_at: datetime | None = None
    identity: str | None = None  #: the name a chain's signing certificate must carry


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


def parse_chain(pem: str) -> tuple[str, str]:
    """``(canonical PEM, fingerprint)`` of a certificate chain to trust, or 400.

    Every certificate must be a CA's (basic constraints ``CA:TRUE``): the chain is what a
    signing certificate must chain to, never a signing certificate itself; and one must
    be self-issued, the root the verification ends at. The chain is made canonical (each
    certificate once, ordered by fingerprint), so reordering or repeating certificates
    gives the same material.
    """
    if len(pem) > MAX_CHAIN_PEM:
        raise BadRequest(f"certificate_chain must be PEM of at most {MAX_CHAIN_PEM} characters")
    try:
        given = len(x509.load_pem_x509_certificates(pem.encode()))
        certs = oms.chain_certificates(pem.encode())
    except ValueError as exc:
        raise BadRequest(f"certificate_chain is not PEM certificates: {exc}") from None
    if given > MAX_CHAIN:
        raise BadRequest(f"certificate_chain holds {given} certificates, at most {MAX_CHAIN}")
    for cert in certs:
        _check_readable(cert)
        basic = next(
            (e.value for e in cert.extensions if isinstance(e.value, x509.BasicConstraints)), None
        )
        if basic is None or not basic.ca:
            raise BadRequest(
                f"certificate {cert.subject.rfc4514_string()} of certificate_chain is not "
                "a CA certificate: register the CA root and intermediates, not the signing "
                "certificate"
            )
    if not any(c.subject == c.issuer for c in certs):
        raise BadRequest("certificate_chain holds no root (a self-issued CA certificate)")
    return oms.chain_pem(certs), oms.chain_fingerprint(certs)


# What ``cryptography`` raises reading a certificate's fields lazily: malformed values
# (ValueError), a repeated extension, a general name of a kind it does not know, a key of
# an algorithm it does not know; TypeError for values of an unexpected ASN.1 type.
_UNREADABLE = (
    ValueError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UnsupportedAlgorithm,
)


def _check_readable(cert: x509.Certificate) -> None:
    """400 unless every field the gateway and the verifiers read parses: the names, the
    extensions (reading them parses each value), the public key and the signature
    algorithm."""
    try:
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        len(cert.extensions)  # parses every extension's value
        cert.public_key()
        _ = cert.signature_hash_algorithm
    except _UNREADABLE as exc:
        raise BadRequest(
            f"certificate {oms.certificate_fingerprint(cert)} of certificate_chain is not "
            f"readable: {exc}"
        ) from None


def parse_identity(identity: str | None, kind: str) -> str | None:
    """The signer identity to register with a chain (None: none), or 400."""
    if identity is None:
        return None
    if kind != CHAIN:
        raise BadRequest("identity binds a certificate chain's signer: a public key has none")
    if (
        not identity
        or len(identity) > MAX_IDENTITY
        or identity != identity.strip()
        or any(unicodedata.category(c).startswith("C") for c in identity)
    ):
        raise BadRequest(
            f"identity must be an e-mail address, URI, DNS name or common name of 1 to "
            f"{MAX_IDENTITY} characters, without control characters or surrounding spaces"
        )
    return identity


def certificates(pem: str) -> dict[str, x509.Certificate]:
    """A stored chain's certificates by fingerprint (none for a public key)."""
    if kind_of(pem) != CHAIN:
        return {}
    return {oms.certificate_fingerprint(c): c for c in oms.chain_certificates(pem.encode())}


def revoked_certificates(keys: list[OmsKey]) -> dict[str, str]:
    """Certificate fingerprint to the revoked material holding it, for each certificate of
    revoked material that no material in force holds."""
    held = {fp for k in keys if k.revoked_at is None for fp in certificates(k.public_key)}
    return {
        fp: k.id
        for k in keys
        if k.revoked_at is not None
        for fp in certificates(k.public_key)
        if fp not in held
    }


def revoked_keys(keys: list[OmsKey]) -> dict[str, str]:
    """Public-key fingerprint (:func:`gateway.tree.oms.key_fingerprint`) to the revoked
    material holding a certificate of that key, for each such key that no certificate of
    material in force has: a revoked certificate's key stays revoked however it is
    certified again."""
    held = {oms.key_fingerprint(c) for k in keys if k.revoked_at is None for c in _certs(k)}
    return {
        kfp: k.id
        for k in keys
        if k.revoked_at is not None
        for c in _certs(k)
        if (kfp := oms.key_fingerprint(c)) is not None and kfp not in held
    }


def _certs(key: OmsKey) -> list[x509.Certificate]:
    return list(certificates(key.public_key).values())


def kind_of(pem: str) -> str:
    """Which material a stored PEM is (what was registered decided it)."""
    return CHAIN if "-----BEGIN CERTIFICATE-----" in pem else PUBLIC_KEY


def _parse(kind: str, pem: str) -> tuple[str, str, str | None]:
    if kind == CHAIN:
        return (*parse_chain(pem), None)
    return parse_public_key(pem)


def register(
    rt: Runtime, caller: Caller, pem: str, kind: str = PUBLIC_KEY, identity: str | None = None
) -> OrgOmsKey:
    """Register ``pem`` (a ``kind``, a chain with an optional signer ``identity``) for the
    caller's org; the same material registered already is returned.

    Only a new registration is recorded: registering the same material again changes
    nothing; material revoked earlier stays revoked (409), and so does a chain holding
    a certificate revoked with other material (:func:`revoked_certificates`). A chain
    registered with another identity is 409: its identity is fixed at registration.
    """
    canonical, fingerprint, curve = _parse(kind, pem)
    identity = parse_identity(identity, kind)
    actor = caller.actor
    with events.fail_closed(rt) as session:
        keys = list(session.scalars(select(OmsKey).where(OmsKey.org == actor.org)))
        key = next((k for k in keys if k.fingerprint == fingerprint), None)
        if key is not None and key.revoked_at is not None:
            raise Conflict(f"OpenSSF model signing key {key.id} was revoked; it stays revoked")
        if key is not None and key.identity != identity:
            raise Conflict(
                f"certificate chain {key.id} is registered with identity {key.identity!r}, "
                f"not {identity!r}; a chain's identity is fixed when it is registered"
            )
        if key is None:
            _refuse_revoked(keys, canonical)
            key = OmsKey(
                id=new_id("oms"),
                org=actor.org,
                principal_id=actor.id,
                public_key=canonical,
                fingerprint=fingerprint,
                identity=identity,
                created_at=rt.now(),
            )
            session.add(key)
            session.flush()
            details: dict[str, object] = {"fingerprint": fingerprint, "kind": kind, "key": key.id}
            if curve:
                details["curve"] = curve
            if kind == CHAIN:
                details["identity"] = identity
            events.record(rt, session, REGISTER, caller, subject_org=actor.org, details=details)
        return _shape(key, actor.name)


def _refuse_revoked(keys: list[OmsKey], canonical: str) -> None:
    """409 if the chain ``canonical`` holds a revoked certificate, or one with a revoked
    certificate's public key (a re-issued or re-encoded copy of it)."""
    revoked, by_key = revoked_certificates(keys), revoked_keys(keys)
    for fp, cert in certificates(canonical).items():
        kfp = oms.key_fingerprint(cert)
        if fp in revoked:
            why = f"was revoked with OpenSSF model signing key {revoked[fp]}"
        elif kfp is not None and kfp in by_key:
            why = (
                f"has the public key {kfp} of a certificate revoked with OpenSSF model "
                f"signing key {by_key[kfp]}"
            )
        else:
            continue
        raise Conflict(
            f"certificate {cert.subject.rfc4514_string()} ({fp}) of certificate_chain {why}; "
            "it stays revoked"
        )


def revoke(rt: Runtime, caller: Caller, key_id: str) -> OrgOmsKey:
    """Revoke the caller's org's material ``key_id`` for good; an ``identity.oms_key.revoke`` entry.

    Another org's key answers as a missing one (404); one already revoked is 409. A pull
    then refuses a ``model.sig`` that verifies only under it, saying it was revoked.
    """
    org = caller.actor.org
    with events.fail_closed(rt) as session:
        key = session.get(OmsKey, key_id)
        if key is None or key.org != org:
            raise NotFound(f"OpenSSF model signing key {key_id} was not found")
        changed = cas_update(
            session,
            update(OmsKey)
            .where(OmsKey.id == key.id, OmsKey.revoked_at.is_(None))
            .values(revoked_at=rt.now()),
        )
        if not changed:
            raise Conflict(f"OpenSSF model signing key {key_id} is already revoked")
        session.refresh(key)
        events.record(
            rt,
            session,
            REVOKE,
            caller,
            subject_org=org,
            details={
                "fingerprint": key.fingerprint,
                "kind": kind_of(key.public_key),
                "key": key.id,
                **({"identity": key.identity} if kind_of(key.public_key) == CHAIN else {}),
                "old": "active",
                "new": "revoked",
            },
        )
        name = session.get(Principal, key.principal_id)
        return _shape(key, key.principal_id if name is None else name.name)


def _shape(key: OmsKey, principal: str) -> OrgOmsKey:
    kind = kind_of(key.public_key)
    curve = parse_public_key(key.public_key)[2] if kind == PUBLIC_KEY else None
    return OrgOmsKey(
        key.id,
        kind,
        key.public_key,
        key.fingerprint,
        curve,
        principal,
        key.created_at,
        key.revoked_at,
        key.identity,
    )


def org_keys(rt: Runtime, org: str, *, revoked: bool = False) -> list[OrgOmsKey]:
    """The OMS material of ``org`` in force (or, with ``revoked``, revoked), oldest first."""
    state = OmsKey.revoked_at.is_not(None) if revoked else OmsKey.revoked_at.is_(None)
    with rt.db.session() as session:
        get_org(session, org)
        rows = session.execute(
            select(OmsKey, Principal.name)
            .outerjoin(Principal, Principal.id == OmsKey.principal_id)
            .where(OmsKey.org == org, state)
            .order_by(OmsKey.created_at, OmsKey.id)
        ).all()
    return [_shape(key, key.principal_id if name is None else name) for key, name in rows]
