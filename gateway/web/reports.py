"""The 30-day review pages, per artifact and per agency, and their export as one HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from gateway import authz
from gateway.api.context import runtime
from gateway.errors import NotFound
from gateway.services import artifacts
from gateway.web import directory, present, review
from gateway.web.audit import day
from gateway.web.base import bp, caller, page_request, render


@bp.get("/reports")
def reports() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.read_own", what="the audit log")
    found = artifacts.visible(rt, who.actor, page_request())
    agencies = directory.agencies(rt) if who.actor.role == "auditor" else []
    return render("reports.html", page=found, agencies=agencies)


def _artifact_review(artifact_id: str) -> review.Review:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.read_own", what="the audit log")
    item = artifacts.get(rt, who, artifact_id, "artifact.read")
    start, _end = review.window(day("from"), item.submitted_at)
    return review.artifact_review(rt, who, item, start)


def _agency_review(agency: str) -> review.Review:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.read_all", what="an agency's review")
    if agency not in directory.agencies(rt):
        raise NotFound(f"agency {agency} was not found")
    start, _end = review.window(day("from"), review.up_to(rt.now()))
    return review.agency_review(rt, who, agency, start)


@bp.get("/reports/artifacts/<artifact_id>")
def artifact_report(artifact_id: str) -> ResponseReturnValue:
    found = _artifact_review(artifact_id)
    export = url_for("web.artifact_export", artifact_id=artifact_id, **_from(found))
    return render("review.html", review=found, export_url=export)


@bp.get("/reports/agencies/<agency>")
def agency_report(agency: str) -> ResponseReturnValue:
    found = _agency_review(agency)
    export = url_for("web.agency_export", agency=agency, **_from(found))
    return render("review.html", review=found, export_url=export)


def _from(found: review.Review) -> dict[str, Any]:
    """The window's start as the page was asked for it (none: the default, computed again)."""
    return {"from": request.args["from"]} if request.args.get("from") else {}


def stylesheet() -> str:
    """The dashboard's stylesheet, which the exported file carries inline (it has no server)."""
    return (Path(bp.static_folder or "") / "style.css").read_text("utf-8")


def _export(found: review.Review) -> Response:
    rt = runtime()
    html = render_template(
        "report_file.html",
        review=found,
        evidence=review.evidence(rt, found),
        now=rt.now(),
        present=present,
        css=Markup(stylesheet()),  # noqa: S704 - the gateway's own stylesheet, not input
    )
    response = Response(html, mimetype="text/html")
    name = f"review-{found.kind}-{found.subject}-{found.start:%Y%m%d}.html"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.get("/reports/artifacts/<artifact_id>/export")
def artifact_export(artifact_id: str) -> ResponseReturnValue:
    return _export(_artifact_review(artifact_id))


@bp.get("/reports/agencies/<agency>/export")
def agency_export(agency: str) -> ResponseReturnValue:
    return _export(_agency_review(agency))
