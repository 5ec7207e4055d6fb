"""Access pages: requests (ask, approve, deny) and grants (time left, revoke, pull command)."""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api.context import runtime
from gateway.models import AccessRequest, Custody, RequestState
from gateway.services import access, artifacts
from gateway.web import directory, forms
from gateway.web.artifacts import may
from gateway.web.base import bp, caller, page_request, render

STATES = tuple(RequestState)


def _filters() -> access.Filters:
    state = request.args.get("state") or None
    return access.Filters(
        artifact=request.args.get("artifact") or None,
        state=state if state in STATES else None,
    )


def lab_holds_custody(req: AccessRequest) -> bool:
    """Whether approving ``req`` needs the lab's own key (lab-held custody): not in a browser."""
    return req.artifact.custody == Custody.LAB


@bp.get("/requests")
def requests_index() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "access.list", what="access requests")
    filters = _filters()
    found = access.requests_visible(rt, who.actor, filters, page_request())
    return render(
        "requests.html",
        page=found,
        filters=filters,
        states=STATES,
        people=directory.people(rt, who.actor, [r.principal_id for r in found.items]),
    )


def _show(req: AccessRequest, status: int = 200, **extra: Any) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    ids = [req.principal_id, req.decided_by]
    context: dict[str, Any] = {
        "req": req,
        "approve": forms.Approve(),
        "deny": forms.Deny(),
        "may": may,
        "people": directory.people(rt, who.actor, ids),
        "lab_custody": lab_holds_custody(req),
        "asked_hours": req.duration_hours or rt.config.access.default_grant_hours,
        **extra,
    }
    return render("request.html", status, **context)


@bp.get("/requests/<request_id>")
def request_page(request_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    return _show(access.get_request(rt, who, request_id, "access.read"))


@bp.post("/requests/<request_id>/approve")
def approve(request_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    req = access.get_request(rt, who, request_id, "access.decide")
    form = forms.Approve()
    if not form.validate():
        return _show(req, 400, approve=form, error=forms.first_error(form))
    access.approve(rt, who, req, access.Approval(form.duration_hours.data))
    return redirect(url_for("web.request_page", request_id=req.id), code=303)


@bp.post("/requests/<request_id>/deny")
def deny(request_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    req = access.get_request(rt, who, request_id, "access.decide")
    form = forms.Deny()
    if not form.validate():
        return _show(req, 400, deny=form, error=forms.first_error(form))
    access.deny(rt, who, req, access.Denial(form.reason.data or None))
    return redirect(url_for("web.request_page", request_id=req.id), code=303)


@bp.post("/artifacts/<artifact_id>/requests")
def create_request(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    item = artifacts.get(rt, who, artifact_id, "access.request")
    form = forms.RequestAccess()
    if not form.validate():
        error = forms.first_error(form)
        return render("request_new.html", 400, item=item, form=form, error=error)
    new = access.NewRequest(form.justification.data or "", form.duration_hours.data)
    made = access.create_request(rt, who, item, new)
    return redirect(url_for("web.request_page", request_id=made.id), code=303)


@bp.get("/grants")
def grants() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "grant.list", what="grants")
    filters = access.Filters(artifact=request.args.get("artifact") or None)
    found = access.grants_visible(rt, who.actor, filters, page_request())
    return render(
        "grants.html",
        page=found,
        may=may,
        people=directory.people(rt, who.actor, [g.grantee_id for g in found.items]),
        names=directory.artifact_names(rt, who.actor, [g.artifact_id for g in found.items]),
    )


@bp.post("/grants/<grant_id>/revoke")
def revoke(grant_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    access.revoke(rt, who, access.get_grant(rt, who, grant_id, "grant.revoke"))
    back = request.form.get("back", "")
    if back.startswith(request.script_root + "/") and not back.startswith("//"):
        return redirect(back, code=303)
    return redirect(url_for("web.grants"), code=303)
