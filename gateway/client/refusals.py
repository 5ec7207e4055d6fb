"""A role's refusal in people's words: what it may not do, not the policy's action name.

The gateway refuses a principal's role with ``a principal with role evaluator may not do
access.decide on access request req_...`` (its policy table's names); the client says
``an evaluator may not approve or deny access requests (access request req_...)``.
"""

from __future__ import annotations

import re

from gateway.client.humane import article

ACTION_WORDS = {
    "me.signing_key": "register a signing key (a lab does)",
    "me.recipient": "register an age recipient (an evaluator does)",
    "upload.create": "upload artifacts (a lab does)",
    "upload.read": "read uploads (the lab that made them does)",
    "upload.write": "send or complete uploads (the lab that made them does)",
    "artifact.withdraw": "withdraw artifacts (the lab that owns them does)",
    "access.request": "ask for access (an evaluator of an agency the artifact is shared with does)",
    "access.decide": "approve or deny access requests (the lab that owns the artifact does)",
    "grant.revoke": "revoke grants (the lab that owns the artifact, or an admin, does)",
    "content.read": "download content (an evaluator under a grant does)",
    "audit.read_all": "read the whole audit log (an auditor does)",
    "audit.read_own": "read audit entries (an auditor, or a lab about its artifacts, does)",
    "audit.proof": "fetch audit proofs (an auditor or a lab does)",
    "admin.manage": "manage organisations and tokens (an admin does)",
}
_REFUSAL = re.compile(r"^a principal with role (\w+) may not do ([a-z_.]+) on (.+)$")


def in_words(detail: str) -> str:
    """``detail`` with a role refusal told in words; any other detail as it is."""
    found = _REFUSAL.match(detail)
    if found is None:
        return detail
    role, action, what = found.groups()
    words = ACTION_WORDS.get(action, f"do {action}")
    return f"{article(role)} may not {words}: refused on {what}"
