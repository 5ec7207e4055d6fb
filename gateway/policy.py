"""Every authorisation decision of the gateway, as pure functions over a table.

``decide(role, action, own)`` answers ALLOW, DENY (403) or HIDE (404: the object's
existence would leak). ``own`` says whether the object belongs to the principal's
organisation: for a lab, the artifact or upload is its org's; for an evaluator, its
agency is in the artifact's ``share_with`` (or the request/grant is its own).
Object state (grant active, artifact available) is checked by the services; who may
try is decided here and nowhere else.
"""

from __future__ import annotations

import enum


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"  # 403: the principal may know the object exists
    HIDE = "hide"  # 404: answering 403 would leak the object's existence


A, D, H = Decision.ALLOW, Decision.DENY, Decision.HIDE

# action -> role -> (decision on own object, decision on a foreign object)
_TABLE: dict[str, dict[str, tuple[Decision, Decision]]] = {
    "me.read": {"lab": (A, A), "evaluator": (A, A), "auditor": (A, A), "admin": (A, A)},
    "me.signing_key": {"lab": (A, A), "evaluator": (D, D), "auditor": (D, D), "admin": (D, D)},
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
    "grant.revoke": {"lab": (A, H), "evaluator": (D, H), "auditor": (D, D), "admin": (A, A)},
    "content.read": {"lab": (D, H), "evaluator": (A, H), "auditor": (D, D), "admin": (D, D)},
    "audit.read_all": {"lab": (D, D), "evaluator": (D, D), "auditor": (A, A), "admin": (D, D)},
    "audit.read_own": {"lab": (A, D), "evaluator": (D, D), "auditor": (A, A), "admin": (D, D)},
    "audit.proof": {"lab": (A, A), "evaluator": (D, D), "auditor": (A, A), "admin": (D, D)},
    "admin.manage": {"lab": (D, D), "evaluator": (D, D), "auditor": (D, D), "admin": (A, A)},
}

ACTIONS = tuple(_TABLE)


def decide(role: str, action: str, own: bool = True) -> Decision:
    """The decision for ``role`` doing ``action`` on an own or a foreign object.

    Unknown roles and actions are denied: the policy fails closed.
    """
    rules = _TABLE.get(action)
    if rules is None or role not in rules:
        return Decision.DENY
    return rules[role][0 if own else 1]


def owns_artifact(role: str, org: str, artifact_org: str, share_with: list[str]) -> bool:
    """Whether an artifact is "own" for a principal of ``org`` in ``role``."""
    if role == "lab":
        return org == artifact_org
    if role == "evaluator":
        return org in share_with
    return True
