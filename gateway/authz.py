"""Every authorisation decision of the gateway, and the visibility rules of every list.

Three things live here and nowhere else:

- **The table.** ``decide(role, action, own)`` answers ALLOW, DENY (403) or HIDE (404:
  the object's existence would leak) for a role doing an action on an own or a foreign
  object. Unknown roles and actions are denied: the policy fails closed.
- **Ownership.** :func:`owns` says whether an object is "own" for an actor, for every
  kind of object: an artifact is a lab's when its org made it and an evaluator's when its
  agency is in ``share_with``; an upload is its org's; an access request and a grant are
  the owning lab's (through their artifact) and their evaluator's own; an audit entry is
  its own for every org it concerns (:func:`gateway.audit.leaf.concerns`: the actor's org
  and the org that owns what it is about), so a lab reads the entries about its artifacts
  and its principals, and an agency those about its evaluators; a lab also reads the
  ``identity.recipient.set`` entries of every principal with a request still pending on
  one of its lab-custody artifacts (a lab-custody approval proves the recipient it wraps a
  file key for against them; :func:`require` and :func:`require_found` ask the database
  for these, :func:`owns` alone cannot tell); a signing key is its org's.
- **Visibility.** :func:`scope` is the same rule as a SQL predicate over a model, derived
  from the table (an object is listed when its read action is ALLOW for it), so every list
  is filtered in the database and the lists, the single reads and the dashboard agree.

:func:`require` asks the table about one action (on one object, or on none) and, on
refusal, records an ``auth.denied`` entry through :mod:`gateway.events` before raising
404 or 403. State refusals of the services (a pending request, a revoked grant) go through
:func:`refuse`, so every denial of an authenticated principal is recorded in one place.
Object state (grant active, artifact available) is the services' to check.
"""

from __future__ import annotations

import enum
from typing import NoReturn, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, true
from sqlalchemy.orm import object_session

from gateway import events
from gateway.audit import store as audit_store
from gateway.audit.leaf import HIDDEN
from gateway.audit.store import Entry
from gateway.caller import Actor, Caller
from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.models import (
    AccessRequest,
    Artifact,
    ArtifactShare,
    Custody,
    Grant,
    Principal,
    RequestState,
    Role,
    SigningKey,
    Upload,
)
from gateway.runtime import Runtime

RECIPIENT_SET = "identity.recipient.set"
"""The action of a recipient registration (:data:`gateway.services.identity.RECIPIENT_SET`)."""


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"  # 403: the principal may know the object exists
    HIDE = "hide"  # 404: answering 403 would leak the object's existence


A, D, H = Decision.ALLOW, Decision.DENY, Decision.HIDE

# action -> role -> (decision on own object, decision on a foreign object)
_TABLE: dict[str, dict[str, tuple[Decision, Decision]]] = {
    "me.read": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (A, A)},
    "me.signing_key": {"lab": (A, A), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
    "signing_key.revoke": {"lab": (A, H), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
    "me.oms_key": {"lab": (A, A), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
    "me.recipient": {"lab": (D, D), "evaluator": (A, A), "auditor": (D, D), "admin": (D, D)},
    "org.signing_keys": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (A, A)},
    "upload.create": {"lab": (A, A), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
    "upload.read": {"lab": (A, H), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
    "upload.write": {"lab": (A, H), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
    "artifact.list": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (A, A)},
    "artifact.read": {"lab": (A, H), "evaluator": (A, H), "auditor": (A, A), "admin": (A, A)},
    "artifact.withdraw": {"lab": (A, H), "evaluator": (D, H), "auditor": (D, D), "admin": (D, D)},
    "access.request": {"lab": (D, H), "evaluator": (A, H), "auditor": (D, D), "admin": (D, D)},
    "access.list": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (A, A)},
    "access.read": {"lab": (A, H), "evaluator": (A, H), "auditor": (A, A), "admin": (A, A)},
    "access.decide": {"lab": (A, H), "evaluator": (D, H), "auditor": (D, D), "admin": (D, D)},
    "grant.list": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (A, A)},
    "grant.read": {"lab": (A, H), "evaluator": (A, H), "auditor": (A, A), "admin": (A, A)},
    "grant.revoke": {"lab": (A, H), "evaluator": (D, H), "auditor": (D, D), "admin": (A, A)},
    "content.read": {"lab": (D, H), "evaluator": (A, H), "auditor": (D, D), "admin": (D, D)},
    "audit.read_all": {"lab": (D, D), "evaluator": (D, D), "auditor": (A, A), "admin": (D, D)},
    "audit.read_own": {"lab": (A, D), "evaluator": (A, D), "auditor": (A, A), "admin": (D, D)},
    "audit.proof": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (D, D)},
    "audit.bundles": {"lab": (D, D), "evaluator": (D, D), "auditor": (A, A), "admin": (D, D)},
    "admin.manage": {"lab": (D, D), "evaluator": (D, D), "auditor": (D, D), "admin": (A, A)},
    "principal.read": {"lab": (A, H), "evaluator": (A, H), "auditor": (A, A), "admin": (A, A)},
}

ACTIONS = tuple(_TABLE)

Owned = Artifact | Upload | AccessRequest | Grant | Entry | SigningKey
"""Every kind of object a principal may own."""

OWNED_KINDS: tuple[type[Owned], ...] = (Artifact, Upload, AccessRequest, Grant, Entry, SigningKey)

READ_ACTION: dict[type[Owned], str] = {
    Artifact: "artifact.read",
    Upload: "upload.read",
    AccessRequest: "access.read",
    Grant: "grant.read",
    Entry: "audit.read_own",
    SigningKey: "org.signing_keys",
}
"""The action that decides whether a principal may see an object of each kind (and list it)."""

T = TypeVar("T", bound=Owned)


def decide(role: str, action: str, own: bool = True) -> Decision:
    """The decision for ``role`` doing ``action`` on an own or a foreign object."""
    rules = _TABLE.get(action)
    if rules is None or role not in rules:
        return Decision.DENY
    return rules[role][0 if own else 1]


# --- ownership, in Python (one object) and in SQL (a list) --------------------------------


def owns(actor: Actor, obj: Owned) -> bool:
    """Whether ``obj`` is "own" for ``actor`` (what "own" means is listed at the top)."""
    if isinstance(obj, Artifact):
        if actor.role == Role.LAB:
            return obj.org == actor.org
        if actor.role == Role.EVALUATOR:
            return actor.org in obj.share_with
        return True
    if isinstance(obj, Upload | SigningKey):
        return obj.org == actor.org
    if isinstance(obj, AccessRequest | Grant):
        if actor.role == Role.LAB:
            return obj.artifact.org == actor.org
        if actor.role == Role.EVALUATOR:
            return _principal(obj) == actor.id
        return True
    return actor.org in obj.concerned()


def _principal(obj: AccessRequest | Grant) -> str:
    return obj.principal_id if isinstance(obj, AccessRequest) else obj.grantee_id


def _owned_sql(actor: Actor, model: type[Owned]) -> ColumnElement[bool]:
    """:func:`owns` as a SQL predicate over ``model``'s rows."""
    labs_artifacts = select(Artifact.id).where(Artifact.org == actor.org)
    if model is Artifact:
        if actor.role == Role.LAB:
            return Artifact.org == actor.org
        if actor.role == Role.EVALUATOR:
            shared = select(ArtifactShare.artifact_id).where(ArtifactShare.org == actor.org)
            return Artifact.id.in_(shared)
        return true()
    if model is Upload:
        return Upload.org == actor.org
    if model is SigningKey:
        return SigningKey.org == actor.org
    if model is AccessRequest:
        if actor.role == Role.LAB:
            return AccessRequest.artifact_id.in_(labs_artifacts)
        if actor.role == Role.EVALUATOR:
            return AccessRequest.principal_id == actor.id
        return true()
    if model is Grant:
        if actor.role == Role.LAB:
            return Grant.artifact_id.in_(labs_artifacts)
        if actor.role == Role.EVALUATOR:
            return Grant.grantee_id == actor.id
        return true()
    if actor.role == Role.LAB:
        return or_(audit_store.concerning(actor.org), _applicants_recipients(labs_artifacts))
    return audit_store.concerning(actor.org)


def _applicants_recipients(labs_artifacts: Select[str]) -> ColumnElement[bool]:
    """The ``identity.recipient.set`` entries of the principals with a request still pending
    on one of a lab's lab-custody artifacts (each such entry's actor is the principal whose
    recipient it sets): the entries the lab proves the recipient it wraps for against."""
    return and_(Entry.action == RECIPIENT_SET, Entry.actor.in_(_pending_applicants(labs_artifacts)))


def _pending_applicants(labs_artifacts: Select[str]) -> Select[str]:
    custody = select(Artifact.id).where(
        Artifact.id.in_(labs_artifacts), Artifact.custody == Custody.LAB
    )
    return select(AccessRequest.principal_id).where(
        AccessRequest.artifact_id.in_(custody), AccessRequest.state == RequestState.PENDING
    )


def _owns_in(rt: Runtime, actor: Actor, obj: Owned) -> bool:
    """:func:`owns`, and for a lab also the ``identity.recipient.set`` entries :func:`scope`
    lists it (which only the database can tell), so a single read agrees with the list."""
    if owns(actor, obj):
        return True
    if actor.role != Role.LAB or not isinstance(obj, Entry) or obj.action != RECIPIENT_SET:
        return False
    labs_artifacts = select(Artifact.id).where(Artifact.org == actor.org)
    asked = _pending_applicants(labs_artifacts).where(AccessRequest.principal_id == obj.actor)
    held = object_session(obj)  # the caller's own transaction when the entry was read in one
    if held is not None:
        return held.scalars(asked.limit(1)).first() is not None
    with rt.db.session() as session:
        return session.scalars(asked.limit(1)).first() is not None


def scope(actor: Actor, model: type[Owned]) -> ColumnElement[bool]:
    """The rows of ``model`` that ``actor`` may see, as a SQL predicate every listing applies."""
    action = READ_ACTION[model]
    if decide(actor.role, action, own=False) is Decision.ALLOW:
        return true()
    if decide(actor.role, action, own=True) is Decision.ALLOW:
        return _owned_sql(actor, model)
    return false()


def principal_scope(actor: Actor) -> ColumnElement[bool]:
    """The principals ``actor`` may name (``principal.read``), as a SQL predicate over them.

    "Own" principals are those whose ids the actor already meets: for a lab, its own
    organisation's, those who asked for access to its artifacts (every grantee asked)
    and those in the audit entries it may read; for an evaluator, itself and those who
    decided or ended its own requests and grants, not its agency's other evaluators,
    whose requests and grants it may not see either.
    """
    if decide(actor.role, "principal.read", own=False) is Decision.ALLOW:
        return true()
    if decide(actor.role, "principal.read", own=True) is not Decision.ALLOW:
        return false()
    if actor.role == Role.LAB:
        labs_artifacts = select(Artifact.id).where(Artifact.org == actor.org)
        asked = select(AccessRequest.principal_id).where(
            AccessRequest.artifact_id.in_(labs_artifacts)
        )
        logged = select(Entry.actor).where(audit_store.concerning(actor.org))
        return or_(Principal.org == actor.org, Principal.id.in_(asked), Principal.id.in_(logged))
    if actor.role == Role.EVALUATOR:
        decided = select(AccessRequest.decided_by).where(AccessRequest.principal_id == actor.id)
        ended = select(Grant.ended_by).where(Grant.grantee_id == actor.id)
        return or_(Principal.id == actor.id, Principal.id.in_(decided), Principal.id.in_(ended))
    return Principal.id == actor.id


# --- enforcement ------------------------------------------------------------------------


def require(
    rt: Runtime, caller: Caller, action: str, obj: Owned | None = None, *, what: str
) -> None:
    """Ask the table about ``action`` (on ``obj``, or on nothing in particular).

    On refusal, record ``auth.denied`` and raise 404 (HIDE) or 403 (DENY); ``what``
    names the object in the answer.
    """
    own = True if obj is None else _owns_in(rt, caller.actor, obj)
    _enforce(rt, caller, action, own, what, obj)


def require_found(rt: Runtime, caller: Caller, action: str, obj: T | None, *, what: str) -> T:
    """``obj``, if ``caller`` may do ``action`` on it; a missing object is 404.

    A missing object is refused as a foreign one would be (so a missing id and another
    org's id answer alike), and is 404 even where the table allows foreign objects.
    """
    if obj is None:
        _enforce(rt, caller, action, False, what, None)
        raise NotFound(f"{what} was not found")
    _enforce(rt, caller, action, _owns_in(rt, caller.actor, obj), what, obj)
    return obj


def _enforce(
    rt: Runtime, caller: Caller, action: str, own: bool, what: str, obj: Owned | None
) -> None:
    role = caller.actor.role
    decision = decide(role, action, own)
    if decision is Decision.ALLOW:
        return
    if decision is Decision.HIDE:
        refuse(rt, caller, action, HIDDEN, NotFound(f"{what} was not found"), subject=obj)
    refuse(
        rt,
        caller,
        action,
        "forbidden",
        Forbidden(f"a principal with role {role} may not do {action} on {what}"),
        subject=obj,
    )


def refuse(
    rt: Runtime,
    caller: Caller,
    action: str,
    reason: str,
    error: GatewayError,
    *,
    subject: Owned | None = None,
) -> NoReturn:
    """Record the refusal of ``action`` as ``auth.denied`` (with ``reason``), then raise ``error``.

    ``subject`` names what was refused in the entry: its artifact, its grant, and the org
    that owns it (whose lab then sees the refusal in its own audit view).
    """
    artifact, grant, org = _subject(subject)
    events.record_denial(
        rt, caller, action, reason, artifact=artifact, grant=grant, subject_org=org
    )
    raise error


def forbid(
    rt: Runtime, caller: Caller, action: str, reason: str, detail: str, *, subject: Owned
) -> NoReturn:
    """A recorded 403 for a state refusal (no grant, pending, denied, revoked, expired)."""
    refuse(rt, caller, action, reason, Forbidden(detail, reason=reason), subject=subject)


def _subject(obj: Owned | None) -> tuple[str | None, str | None, str | None]:
    """``(artifact id, grant id, owning org)`` of a refused object, for its audit entry."""
    if isinstance(obj, Artifact):
        return obj.id, None, obj.org
    if isinstance(obj, Upload | SigningKey):
        return None, None, obj.org
    if isinstance(obj, AccessRequest):
        return obj.artifact_id, None, obj.artifact.org
    if isinstance(obj, Grant):
        return obj.artifact_id, obj.id, obj.artifact.org
    if isinstance(obj, Entry):
        return obj.artifact, obj.grant, obj.subject_org
    return None, None, None
