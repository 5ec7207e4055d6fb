"""Principals by id: who a ``prn_...`` is (name, organisation, role), within each role's view.

Lists and audit entries name people by principal id; this turns ids into names for the
people who read them. What each role may look up is :func:`gateway.authz.principal_scope`
(a lab: its own organisation's principals and those who asked for access to its
artifacts or appear in its audit view; an evaluator: itself and those who decided or
ended its requests and grants; auditors and admins: everyone). A batch lookup answers
only the ids the caller may see and says nothing of the rest; a single lookup of an id
it may not see is a recorded 404, as for any other object.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from gateway import authz
from gateway.audit import store as audit_store
from gateway.caller import Caller
from gateway.errors import BadRequest, NotFound
from gateway.models import Principal
from gateway.runtime import Runtime

MAX_LOOKUP = 100
SELF = "me"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class PrincipalInfo:
    """What a principal is called: its id, name, organisation and role."""

    id: str
    name: str
    org: str
    role: str


@dataclass(frozen=True)
class Lookup:
    """Principal ids to name: 1 to :data:`MAX_LOOKUP` of them, each an id's characters."""

    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.ids) <= MAX_LOOKUP:
            raise BadRequest(f"give between 1 and {MAX_LOOKUP} principal ids (?id=...&id=...)")
        for value in self.ids:
            if not _ID.match(value):
                raise BadRequest("a principal id is 1-64 letters, digits, '_' or '-'")


def _info(row: Principal) -> PrincipalInfo:
    return PrincipalInfo(id=row.id, name=row.name, org=row.org, role=row.role)


def names(rt: Runtime, caller: Caller, lookup: Lookup) -> list[PrincipalInfo]:
    """The principals of ``lookup`` that ``caller`` may see, in the order asked; others left out."""
    wanted = list(dict.fromkeys(lookup.ids))
    with rt.db.session() as session:
        audit_store.settle(session)  # a lab's scope includes those named in its log view
        rows = session.scalars(
            select(Principal).where(Principal.id.in_(wanted), authz.principal_scope(caller.actor))
        ).all()
    found = {row.id: _info(row) for row in rows}
    return [found[i] for i in wanted if i in found]


def get(rt: Runtime, caller: Caller, principal_id: str) -> PrincipalInfo:
    """One principal (``me``: the caller), if ``caller`` may see it; else a recorded 404."""
    wanted = caller.actor.id if principal_id == SELF else principal_id
    found: Sequence[PrincipalInfo] = names(rt, caller, Lookup((wanted,)))
    if not found:
        authz.refuse(
            rt, caller, "principal.read", "hidden", NotFound(f"principal {wanted} was not found")
        )
    return found[0]
