"""Artifact routes: list and read, scoped by role."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from gateway import events, policy
from gateway.api.common import actor, authenticate_request, authorize, gw, page, page_args
from gateway.models import Artifact
from gateway.services import artifacts

bp = Blueprint("artifacts", __name__, url_prefix="/v1/artifacts")
bp.before_request(authenticate_request)


def load_artifact(artifact_id: str, action: str) -> Artifact:
    """The artifact, if ``actor()`` may do ``action`` on it; else 404/403 and auth.denied."""
    with gw().db.session() as session:
        artifact = session.get(Artifact, artifact_id)
    who = actor()
    if artifact is None:
        authorize(action, False, what=f"artifact {artifact_id}")
        return None  # type: ignore[return-value]  # unreachable for roles that may not see
    own = policy.owns_artifact(who.role, who.org, artifact.org, artifact.share_with)
    authorize(
        action, own, what=f"artifact {artifact_id}", artifact=artifact.id, subject_org=artifact.org
    )
    return artifact


@bp.get("")
def index() -> Any:
    authorize("artifact.list", what="artifacts")
    limit, offset = page_args()
    with gw().db.session() as session:
        rows, more = artifacts.visible(session, actor(), limit, offset)
        return page([artifacts.artifact_json(a) for a in rows], limit, offset, more)


@bp.get("/<artifact_id>")
def show(artifact_id: str) -> Any:
    from gateway.errors import NotFound

    artifact = load_artifact(artifact_id, "artifact.read")
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} was not found")
    runtime = gw()
    if actor().role == "evaluator":
        with events.fail_closed(runtime) as session:
            events.record(
                runtime,
                session,
                "artifact.read",
                actor(),
                artifact=artifact.id,
                subject_org=artifact.org,
            )
    return artifacts.artifact_json(artifact)
