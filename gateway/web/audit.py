"""Auditor's pages (a lab's too, for the entries about its artifacts): the log, one entry, checkpoints."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import Response, request
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api.context import runtime
from gateway.audit.store import Entry
from gateway.audit.tlogproof import EXTENSION
from gateway.errors import BadRequest
from gateway.web import directory, proofs, queries
from gateway.web.base import bp, caller, page_request, render

OUTCOMES = ("ok", "denied")
ANCHORS_SHOWN = 50


FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
"""The days a page takes: a year short of the calendar's end, so the arithmetic a page
does around a day (a review's 30 days, the log's clock skew) never leaves it."""


def day(name: str, end: bool = False) -> datetime | None:
    """Query parameter ``name`` as a UTC day (``YYYY-MM-DD``): its first instant, or its last.

    A day before :data:`FIRST_DAY` or after :data:`LAST_DAY` is a 400.
    """
    raw = request.args.get(name) or None
    if raw is None:
        return None
    try:
        given = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise BadRequest(f"{name} must be a day written YYYY-MM-DD, not {raw[:40]!r}") from None
    if not FIRST_DAY <= given <= LAST_DAY:
        raise BadRequest(f"{name} must be a day from {FIRST_DAY} to {LAST_DAY}, not {raw}")
    start = datetime.combine(given, time())
    return start + timedelta(days=1, microseconds=-1) if end else start


def _filters() -> queries.LogFilters:
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
    return queries.LogFilters(
        org=_text("org"),
        artifact=_text("artifact"),
        actor=_text("actor"),
        action=_text("action"),
        outcome=outcome,
        since=day("since"),
        until=day("until", end=True),
    )


def _text(name: str) -> str | None:
    value = request.args.get(name) or None
    if value is not None and len(value) > 128:
        raise BadRequest(f"the {name} filter is at most 128 characters")
    return value


@bp.get("/audit")
def audit() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.read_own", what="the audit log")
    filters = _filters()
    found = queries.entries(rt, who.actor, filters, page_request())
    return render(
        "audit.html",
        page=found,
        filters=filters,
        args=request.args,
        outcomes=OUTCOMES,
        people=directory.people(rt, who.actor, [e.actor for e in found.items]),
        names=directory.artifact_names(rt, who.actor, [e.artifact for e in found.items]),
    )


def _readable(index: int) -> Entry:
    rt, who = runtime(), caller()
    found = queries.entry(rt, index)
    entry = authz.require_found(rt, who, "audit.read_own", found, what=f"audit entry {index}")
    authz.require(rt, who, "audit.proof", what="audit proofs")
    return entry


@bp.get("/audit/entries/<int:index>")
def entry(index: int) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    found = _readable(index)
    latest = proofs.latest_checkpoint(rt)
    fields = found.entry()
    return render(
        "entry.html",
        entry=found,
        fields=fields,
        proven=proofs.prove(rt, found, latest),
        latest=latest,
        cosigners=proofs.cosigners(latest),
        people=directory.people(rt, who.actor, [found.actor]),
        names=directory.artifact_names(rt, who.actor, [found.artifact]),
    )


@bp.get(f"/audit/entries/<int:index>{EXTENSION}")
def entry_proof(index: int) -> ResponseReturnValue:
    rt = runtime()
    found = _readable(index)
    proven = proofs.prove(rt, found, proofs.latest_checkpoint(rt))
    if not proven.ok:
        raise BadRequest(f"entry {index} has no proof to give: {proven.message}")
    response = Response(proven.proof, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="entry-{index}{EXTENSION}"'
    return response


@bp.get("/audit/checkpoints")
def checkpoints() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "audit.proof", what="audit proofs")
    latest = proofs.latest_checkpoint(rt)
    return render(
        "checkpoints.html",
        latest=latest,
        cosigners=proofs.cosigners(latest),
        anchors=proofs.anchors(rt, latest, ANCHORS_SHOWN),
        shown=ANCHORS_SHOWN,
    )
