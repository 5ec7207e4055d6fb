"""Organisations, principals and bearer tokens; a principal's recipient and signing keys.

A token is ``gw_`` followed by 43 URL-safe characters (32 random bytes). It is shown
once; only its SHA-256 is stored. Lookup is by that hash, then a constant-time compare.
The operator's functions (organisations, tokens) work in the caller's session, so the
CLI records each in the same transaction; a principal's own work in their own.

Every identity change is an audit entry in the change's own transaction, with the old and
the new value, concerning the org whose identity it is: ``identity.recipient.set``,
``identity.signing_key.register`` and ``identity.signing_key.revoke``. A signing key is
registered only with proof that the registrant holds it (:mod:`gateway.client.possession`),
by one org only, and once revoked never again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import age, events
from gateway.caller import Actor, Caller
from gateway.client import possession
from gateway.clock import rfc3339
from gateway.config import TokensConfig
from gateway.db import cas_update
from gateway.errors import BadRequest, Conflict, NotFound, Unauthorized
from gateway.models import ROLE_FOR_KIND, Org, OrgKind, Principal, Role, SigningKey, Token, new_id
from gateway.orgname import NAME as _NAME  # one syntax for gateway and client
from gateway.runtime import Runtime

TOKEN_PREFIX = "gw_"  # noqa: S105 - a prefix, not a secret
MAX_TTL_DAYS = TokensConfig.max_ttl_days
RECIPIENT_SET = "identity.recipient.set"
SIGNING_KEY_REGISTER = "identity.signing_key.register"
SIGNING_KEY_REVOKE = "identity.signing_key.revoke"


@dataclass(frozen=True)
class Profile:
    """A principal as it sees itself: name, org, role, registered recipient and signing key."""

    name: str
    org: str
    role: str
    recipient: str | None
    signing_key: str | None


@dataclass(frozen=True)
class OrgSigningKey:
    """A signing key an organisation registered, and the name of the principal who did."""

    public_key: str
    principal: str
    created_at: datetime
    revoked_at: datetime | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BadRequest(
            f"{what} must be 1-64 characters of lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def create_org(session: Session, name: str, kind: str, now: datetime) -> Org:
    check_name(name, "organisation name")
    if kind not in set(OrgKind):
        raise BadRequest(f"organisation kind must be one of {', '.join(OrgKind)}")
    if session.get(Org, name) is not None:
        raise Conflict(f"organisation {name} already exists")
    org = Org(name=name, kind=kind, created_at=now)
    session.add(org)
    session.flush()
    return org


def ensure_org(session: Session, name: str, kind: str, now: datetime) -> Org:
    """The org ``name``, created if missing, even when another transaction creates it too."""
    existing = session.get(Org, name)
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            return create_org(session, name, kind, now)
    except (IntegrityError, Conflict):
        # Created by a transaction that committed between the read and the insert (the
        # unique key refused ours), or before create_org's own look (it says Conflict).
        raced = session.get(Org, name, populate_existing=True)
        if raced is None:
            raise
        return raced


def get_org(session: Session, name: str) -> Org:
    org = session.get(Org, name)
    if org is None:
        raise NotFound(f"organisation {name} not found")
    return org


def create_token(
    session: Session,
    *,
    org: str,
    role: str,
    name: str,
    ttl_days: int,
    now: datetime,
    max_ttl_days: int = MAX_TTL_DAYS,
) -> tuple[str, Principal]:
    """Create (or reuse) principal ``name`` in ``org`` and issue it a new token that lives
    ``ttl_days``, from 1 to ``max_ttl_days`` (``tokens.max_ttl_days``): a bearer token that
    outlives every rotation is a stolen credential that never expires."""
    if role not in set(Role):
        raise BadRequest(f"role must be one of {', '.join(Role)}")
    check_name(name, "principal name")
    if isinstance(ttl_days, bool) or not isinstance(ttl_days, int) or ttl_days < 1:
        raise BadRequest("a token's lifetime must be at least 1 day")
    if ttl_days > max_ttl_days:
        raise BadRequest(
            f"a token's lifetime is at most {max_ttl_days} days (tokens.max_ttl_days), "
            f"not {ttl_days}"
        )
    the_org = get_org(session, org)
    fits = ROLE_FOR_KIND[OrgKind(the_org.kind)]
    if fits != role:
        raise BadRequest(
            f"role {role} does not fit organisation {org} "
            f"({'an' if the_org.kind[0] in 'aeiou' else 'a'} {the_org.kind}: "
            f"its principals are {fits}s)"
        )
    principal = session.scalars(
        select(Principal).where(Principal.org == org, Principal.name == name)
    ).first()
    if principal is None:
        principal = Principal(id=new_id("prn"), name=name, org=org, role=role, created_at=now)
        session.add(principal)
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    session.add(
        Token(
            id=new_id("tok"),
            principal_id=principal.id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(days=ttl_days),
        )
    )
    session.flush()
    return token, principal


def authenticate(rt: Runtime, token: str | None) -> Actor:
    """The actor a bearer token stands for, or :class:`Unauthorized`."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise Unauthorized("a valid bearer token is required (Authorization: Bearer gw_...)")
    digest = hash_token(token)
    with rt.db.session() as session:
        row = session.scalars(select(Token).where(Token.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("the bearer token is not valid")
    if row.revoked_at is not None:
        raise Unauthorized("the bearer token has been revoked")
    if row.expires_at <= rt.now():
        raise Unauthorized("the bearer token has expired")
    p = row.principal
    return Actor(id=p.id, name=p.name, org=p.org, role=p.role, recipient=p.recipient)


def revoke_tokens(session: Session, *, org: str, name: str, now: datetime) -> int:
    principal = session.scalars(
        select(Principal).where(Principal.org == org, Principal.name == name)
    ).first()
    if principal is None:
        raise NotFound(f"principal {name} not found in {org}")
    rows = session.scalars(
        select(Token).where(Token.principal_id == principal.id, Token.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = now
    return len(rows)


def org_signing_keys(rt: Runtime, org: str, *, revoked: bool = False) -> list[OrgSigningKey]:
    """The signing keys in force of ``org`` (``revoked``: those revoked), oldest first, each
    with its principal's name."""
    state = SigningKey.revoked_at.is_not(None) if revoked else SigningKey.revoked_at.is_(None)
    with rt.db.session() as session:
        get_org(session, org)
        rows = session.execute(
            select(SigningKey, Principal.name)
            .outerjoin(Principal, Principal.id == SigningKey.principal_id)
            .where(SigningKey.org == org, state)
            .order_by(SigningKey.created_at, SigningKey.id)
        ).all()
    return [
        OrgSigningKey(
            key.public_key,
            key.principal_id if name is None else name,
            key.created_at,
            key.revoked_at,
        )
        for key, name in rows
    ]


# --- a principal's own identity: its recipient and signing keys ----------------------------


def profile(rt: Runtime, caller: Caller) -> Profile:
    """The caller as it sees itself."""
    with rt.db.session() as session:
        return _profile(session, caller.actor, None)


def set_recipient(rt: Runtime, caller: Caller, recipient: str) -> Profile:
    """Register the age recipient released keys go to (an evaluator's); the change is an entry.

    A recipient is taken only once a file key has been wrapped to it: one that parses but
    cannot be used (a low-order X25519 point, a malformed ML-KEM key) is refused here, not
    at the first key release. ``identity.recipient.set`` records the old and the new one,
    in the change's own transaction; setting the one already registered changes nothing.
    """
    try:
        parsed = age.parse_recipient(recipient)
    except age.AgeError as exc:
        raise BadRequest(f"recipient is not an age recipient: {exc}") from None
    try:
        age.wrap_file_key(secrets.token_bytes(16), [parsed])
    except (age.AgeError, ValueError) as exc:  # cryptography's own refusals are ValueErrors
        raise BadRequest(f"recipient cannot be wrapped to: {exc}") from None
    actor = caller.actor
    with events.fail_closed(rt) as session:
        principal = _principal(session, actor)
        old, new = principal.recipient, str(parsed)
        if old != new:
            principal.recipient = new
            details = {"principal": actor.id, "name": principal.name, "old": old, "new": new}
            events.record(
                rt, session, RECIPIENT_SET, caller, subject_org=actor.org, details=details
            )
        return _profile(session, actor, None)


def register_signing_key(rt: Runtime, caller: Caller, public_key: str, proof: str) -> Profile:
    """Register an Ed25519 key that manifests of the caller's org may be signed with (a lab's).

    ``proof`` is the key's signature of the registration statement for the caller's org and
    name (:mod:`gateway.client.possession`). A key is held by one registration only: one
    another org holds, or one revoked, is refused (409); one the org already holds is not
    registered twice. A registration is an ``identity.signing_key.register`` entry.
    """
    canonical = _public_key(public_key)
    actor = caller.actor
    if not possession.verify(actor.org, actor.name, canonical, proof):
        raise BadRequest(
            "proof does not verify: it must be the new key's signature of the registration "
            f"statement for org {actor.org} and principal {actor.name}"
        )
    try:
        with events.fail_closed(rt) as session:
            key = session.scalars(
                select(SigningKey).where(SigningKey.public_key == canonical)
            ).first()
            if key is not None:
                _held(key, actor)
                return _profile(session, actor, key)
            key = SigningKey(
                id=new_id("key"),
                org=actor.org,
                principal_id=actor.id,
                public_key=canonical,
                created_at=rt.now(),
            )
            try:
                with session.begin_nested():
                    session.add(key)
            except IntegrityError:
                # Registered by a transaction that committed between the read and the insert.
                raced = session.scalars(
                    select(SigningKey).where(SigningKey.public_key == canonical)
                ).first()
                if raced is None:
                    raise
                _held(raced, actor)
                return _profile(session, actor, raced)
            events.record(
                rt,
                session,
                SIGNING_KEY_REGISTER,
                caller,
                subject_org=actor.org,
                details=_key_details(key, old=None, new="active"),
            )
            return _profile(session, actor, key)
    except Conflict as exc:
        if isinstance(exc.__context__, IntegrityError):  # registered by another meanwhile
            raise Conflict(
                "this signing key was registered at the same moment; try again"
            ) from None
        raise


def _public_key(text: str) -> str:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise BadRequest("public_key must be standard base64") from None
    if len(raw) != 32:
        raise BadRequest("public_key must be a 32-byte Ed25519 public key, base64-encoded")
    return base64.b64encode(raw).decode()


def _held(key: SigningKey, actor: Actor) -> None:
    """Refuse a key registered before, unless it is the caller's org's and in force."""
    if key.org != actor.org:
        raise Conflict("this signing key is registered by another organisation")
    if key.revoked_at is not None:
        raise Conflict(
            f"this signing key was revoked at {rfc3339(key.revoked_at)} and cannot be "
            "registered again; make a new one"
        )


def _key_details(key: SigningKey, *, old: str | None, new: str) -> dict[str, str | None]:
    return {
        "key": key.id,
        "public_key": key.public_key,
        "principal": key.principal_id,
        "old": old,
        "new": new,
    }


def own_signing_keys(rt: Runtime, caller: Caller) -> list[SigningKey]:
    """Every signing key the caller's org registered, revoked ones included, oldest first."""
    with rt.db.session() as session:
        rows = session.scalars(
            select(SigningKey)
            .where(SigningKey.org == caller.actor.org)
            .order_by(SigningKey.created_at, SigningKey.id)
        ).all()
        session.expunge_all()
    return list(rows)


def find_signing_key(rt: Runtime, key_id: str) -> SigningKey | None:
    with rt.db.session() as session:
        key = session.get(SigningKey, key_id)
        if key is not None:
            session.expunge(key)
    return key


def revoke_signing_key(rt: Runtime, who: Caller | None, key: SigningKey) -> SigningKey:
    """Revoke ``key`` for good (the caller has been authorised); an ``identity.signing_key.revoke`` entry.

    ``who`` None is the operator at the CLI. A key already revoked is 409. Manifests signed
    with it are no longer accepted at completion; completed artifacts keep their signature.
    """
    now = rt.now()
    with events.fail_closed(rt) as session:
        changed = cas_update(
            session,
            update(SigningKey)
            .where(SigningKey.id == key.id, SigningKey.revoked_at.is_(None))
            .values(revoked_at=now),
        )
        if not changed:
            raise Conflict(f"signing key {key.id} is already revoked")
        events.record(
            rt,
            session,
            SIGNING_KEY_REVOKE,
            who,
            subject_org=key.org,
            details=_key_details(key, old="active", new="revoked"),
        )
        row = session.get(SigningKey, key.id)
        assert row is not None
        session.expunge(row)
    return row


def operator_signing_key(rt: Runtime, org: str, key: str) -> SigningKey:
    """The key of ``org`` named by its id or its public key (the operator's CLI)."""
    with rt.db.session() as session:
        get_org(session, org)
        row = session.scalars(
            select(SigningKey).where(
                SigningKey.org == org, or_(SigningKey.id == key, SigningKey.public_key == key)
            )
        ).first()
        if row is None:
            raise NotFound(f"organisation {org} has no signing key {key}")
        session.expunge(row)
    return row


def _principal(session: Session, actor: Actor) -> Principal:
    principal = session.get(Principal, actor.id)
    if principal is None:
        raise NotFound("the principal of this token no longer exists")
    return principal


def _profile(session: Session, actor: Actor, signing_key: SigningKey | None) -> Profile:
    principal = _principal(session, actor)
    key = (
        signing_key
        or session.scalars(
            select(SigningKey)
            .where(SigningKey.principal_id == actor.id, SigningKey.revoked_at.is_(None))
            .order_by(SigningKey.created_at.desc(), SigningKey.id.desc())
        ).first()
    )
    return Profile(
        name=principal.name,
        org=principal.org,
        role=principal.role,
        recipient=principal.recipient,
        signing_key=key.public_key if key is not None else None,
    )
