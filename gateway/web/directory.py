"""Names for ids: the reads the pages need that no service offers yet.

The services answer with ids (a grant's ``grantee_id``, an entry's ``actor``); people
read names. Each function here is one query, and the names it gives are only those the
actor may see: artifacts by :func:`gateway.authz.scope`, people by
:func:`gateway.authz.principal_scope`, so a name never tells more than the API would.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from gateway import authz
from gateway.audit import store as audit_store
from gateway.caller import Actor
from gateway.models import Artifact, Org, OrgKind, Principal
from gateway.runtime import Runtime
from gateway.web.present import Person

MAX_LOOKUP = 1000


def people(rt: Runtime, actor: Actor, ids: Iterable[str | None]) -> dict[str, Person]:
    """The principals among ``ids`` that ``actor`` may name, by id (at most :data:`MAX_LOOKUP`).

    The same scope as ``GET /v1/principals`` (:func:`gateway.authz.principal_scope`): an id
    the actor may not name stays a bare id on the page, as the API would refuse it.
    """
    wanted = sorted({i for i in ids if i})[:MAX_LOOKUP]
    if not wanted:
        return {}
    with rt.db.session() as session:
        audit_store.settle(session)  # a lab's scope includes those named in its log view
        rows = session.execute(
            select(Principal.id, Principal.name, Principal.org).where(
                Principal.id.in_(wanted), authz.principal_scope(actor)
            )
        ).all()
    return {pid: Person(name, org) for pid, name, org in rows}


def artifact_names(rt: Runtime, actor: Actor, ids: Iterable[str | None]) -> dict[str, str]:
    """The names of the artifacts among ``ids`` that ``actor`` may see, by id."""
    wanted = sorted({i for i in ids if i})[:MAX_LOOKUP]
    if not wanted:
        return {}
    with rt.db.session() as session:
        rows = session.execute(
            select(Artifact.id, Artifact.name).where(
                Artifact.id.in_(wanted), authz.scope(actor, Artifact)
            )
        ).all()
    return {aid: name for aid, name in rows}


def agencies(rt: Runtime) -> list[str]:
    """Every agency's name, for the auditor's per-agency report."""
    with rt.db.session() as session:
        return list(
            session.scalars(select(Org.name).where(Org.kind == OrgKind.AGENCY).order_by(Org.name))
        )
