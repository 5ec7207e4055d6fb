"""Artifact pages: the list, one artifact (its requests, grants and accesses), withdrawal."""

from __future__ import annotations

from typing import Any

from flask import redirect, url_for
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api.context import runtime
from gateway.models import Artifact, GrantState, RequestState
from gateway.paging import MAX_LIMIT, PageRequest
from gateway.services import access, artifacts, lifecycle
from gateway.web import directory, forms, proofs, queries
from gateway.web.base import bp, caller, page_request, render


def may(action: str, obj: authz.Owned | None = None) -> bool:
    """What the policy table says the caller may do (to show a button; the act asks again)."""
    actor = caller().actor
    own = True if obj is None else authz.owns(actor, obj)
    return authz.decide(actor.role, action, own) is authz.Decision.ALLOW


@bp.get("/artifacts")
def artifacts_index() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "artifact.list", what="artifacts")
    found = artifacts.visible(rt, who.actor, page_request())
    return render("artifacts.html", page=found)


@bp.get("/artifacts/<artifact_id>")
def artifact(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    item = artifacts.read(rt, who, artifacts.get(rt, who, artifact_id, "artifact.read"))
    requests = access.requests_visible(
        rt, who.actor, access.Filters(artifact=item.id), PageRequest(rt.config.web.page_size)
    )
    grants = access.grants_visible(
        rt, who.actor, access.Filters(artifact=item.id), PageRequest(rt.config.web.page_size)
    )
    ids = [r.principal_id for r in requests.items] + [g.grantee_id for g in grants.items]
    context: dict[str, Any] = {
        "item": item,
        "requests": requests,
        "grants": grants,
        "accesses": None,
    }
    if may("audit.read_own"):
        context.update(_accesses(item, ids))
    else:
        context["people"] = directory.people(rt, who.actor, ids)
    return render("artifact.html", form=forms.RequestAccess(), may=may, **context)


def _accesses(item: Artifact, ids: list[str]) -> dict[str, Any]:
    """Every access to ``item`` the caller may read, each proven in the signed checkpoint."""
    rt, who = runtime(), caller()
    latest = proofs.latest_checkpoint(rt)
    found = queries.entries(
        rt, who.actor, queries.LogFilters(artifact=item.id, below=latest.size), page_request()
    )
    proven = {e.index: proofs.prove(rt, e, latest) for e in found.items}
    return {
        "accesses": found,
        "proven": proven,
        "latest": latest,
        "complete": proofs.lab_view_complete(rt, item.org),
        "people": directory.people(rt, who.actor, ids + [e.actor for e in found.items]),
    }


@bp.get("/artifacts/<artifact_id>/withdraw")
def withdraw_confirm(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    item = artifacts.get(rt, who, artifact_id, "artifact.withdraw")
    return render("withdraw.html", item=item, form=forms.Withdraw(), **_at_stake(item))


def _at_stake(item: Artifact) -> dict[str, int]:
    """What a withdrawal would end: pending requests and live grants (counted up to a page)."""
    rt, who = runtime(), caller()
    first = PageRequest(MAX_LIMIT)
    pending = access.requests_visible(
        rt, who.actor, access.Filters(artifact=item.id, state=RequestState.PENDING), first
    )
    grants = access.grants_visible(rt, who.actor, access.Filters(artifact=item.id), first)
    now = rt.now()
    live = [g for g in grants.items if g.state_at(now) == GrantState.ACTIVE]
    return {"pending": len(pending.items), "live": len(live)}


@bp.post("/artifacts/<artifact_id>/withdraw")
def withdraw(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    item = artifacts.get(rt, who, artifact_id, "artifact.withdraw")
    form = forms.Withdraw()
    if not form.validate() or form.confirm.data != item.name:
        error = forms.first_error(form) or "the name typed is not this artifact's name"
        return render("withdraw.html", 400, item=item, form=form, error=error, **_at_stake(item))
    lifecycle.withdraw(rt, who, item)
    return redirect(url_for("web.artifact", artifact_id=item.id), code=303)
