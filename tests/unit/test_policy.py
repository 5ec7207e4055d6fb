"""The policy as a table: role x action x own/foreign object."""

import pytest

from gateway.authz import ACTIONS, Decision, decide

A, D, H = Decision.ALLOW, Decision.DENY, Decision.HIDE
ROLES = ("lab", "evaluator", "auditor", "admin")

# (action, role, own, expected) for the decisions that matter most; the rest is
# covered by the invariants below.
TABLE = [
    ("upload.create", "lab", True, A),
    ("upload.create", "evaluator", True, D),
    ("upload.create", "auditor", True, D),
    ("upload.create", "admin", True, D),
    ("upload.write", "lab", True, A),
    ("upload.write", "lab", False, H),
    ("artifact.read", "lab", True, A),
    ("artifact.read", "lab", False, H),
    ("artifact.read", "evaluator", True, A),
    ("artifact.read", "evaluator", False, H),
    ("artifact.read", "auditor", False, A),
    ("artifact.read", "admin", False, A),
    ("artifact.withdraw", "lab", True, A),
    ("artifact.withdraw", "lab", False, H),
    ("artifact.withdraw", "admin", True, D),
    ("access.request", "evaluator", True, A),
    ("access.request", "evaluator", False, H),
    ("access.request", "lab", True, D),
    ("access.decide", "lab", True, A),
    ("access.decide", "lab", False, H),
    ("access.decide", "evaluator", True, D),
    ("grant.revoke", "lab", True, A),
    ("grant.revoke", "lab", False, H),
    ("grant.revoke", "admin", False, A),
    ("grant.revoke", "auditor", True, D),
    ("content.read", "evaluator", True, A),
    ("content.read", "evaluator", False, H),
    ("content.read", "lab", True, D),
    ("content.read", "auditor", True, D),
    ("content.read", "admin", True, D),
    ("audit.read_all", "auditor", True, A),
    ("audit.read_all", "lab", True, D),
    ("audit.read_own", "lab", True, A),
    ("audit.read_own", "evaluator", True, D),
    ("audit.proof", "lab", True, A),
    ("audit.proof", "evaluator", True, D),
    ("admin.manage", "admin", True, A),
    ("admin.manage", "lab", True, D),
    ("me.recipient", "evaluator", True, A),
    ("me.recipient", "lab", True, D),
    ("me.signing_key", "lab", True, A),
    ("me.signing_key", "evaluator", True, D),
]


@pytest.mark.parametrize(("action", "role", "own", "expected"), TABLE)
def test_table(action: str, role: str, own: bool, expected: Decision) -> None:
    assert decide(role, action, own) is expected


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_foreign_is_never_more_than_own(action: str, role: str) -> None:
    order = {A: 2, D: 1, H: 0}
    assert order[decide(role, action, False)] <= order[decide(role, action, True)]


@pytest.mark.parametrize("role", ROLES)
def test_nobody_but_an_evaluator_reads_content(role: str) -> None:
    allowed = decide(role, "content.read", True) is A
    assert allowed == (role == "evaluator")


def test_unknown_role_or_action_fails_closed() -> None:
    assert decide("superuser", "content.read", True) is D
    assert decide("admin", "content.delete_everything", True) is D
