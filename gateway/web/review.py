"""The 30-day review, per artifact and per agency: entries, names, totals, timeline, evidence.

What a review lists comes through the same scope as the log browser
(:func:`gateway.web.queries.entries`), below the size of the signed checkpoint it is
proven against, so every entry shown has a proof in that checkpoint. Which entries
belong, and the totals, are :mod:`gateway.web.report`'s pure functions, the ones its
offline verifier runs again on the exported file.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any

from gateway import authz
from gateway.audit import tlogproof
from gateway.audit.store import Entry
from gateway.caller import Caller
from gateway.errors import BadRequest
from gateway.models import Artifact
from gateway.paging import MAX_LIMIT, PageRequest
from gateway.runtime import Runtime
from gateway.web import directory, present, proofs, queries, report, timeline

WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class Row:
    """One listed entry: its stored form, its decoded leaf, and how a person reads it."""

    entry: Entry
    fields: dict[str, Any]
    when: datetime
    who: str
    what: str
    bytes: int | None


@dataclass(frozen=True)
class Review:
    kind: str  # "artifact" or "agency"
    subject: str
    title: str
    start: datetime
    end: datetime
    latest: proofs.Latest
    rows: list[Row]
    people: list[report.Total]
    agencies: list[report.Total]
    names: dict[str, str]
    persons: dict[str, present.Person]
    drawing: timeline.Timeline


def window(first_day: datetime | None, default: datetime) -> tuple[datetime, datetime]:
    """The 30 days from the start of ``first_day``, else from ``default`` itself (naive UTC)."""
    start = datetime.combine(first_day.date(), time()) if first_day else default
    return start, start + WINDOW


def up_to(now: datetime) -> datetime:
    """The start of the 30 days that end just after ``now`` (so entries made now are in)."""
    return now + timedelta(seconds=1) - WINDOW


def _collect(
    rt: Runtime, caller: Caller, filters: queries.LogFilters, into: dict[int, Entry]
) -> None:
    cursor = None
    limit = rt.config.web.report_max_entries
    while True:
        found = queries.entries(rt, caller.actor, filters, PageRequest(MAX_LIMIT, cursor))
        into.update((e.index, e) for e in found.items)
        if len(into) > limit:
            raise BadRequest(
                f"this window holds more than {limit} entries (web.report_max_entries): "
                "choose a later start or ask the operator to raise the limit"
            )
        if found.next_cursor is None:
            return
        cursor = found.next_cursor


def _bounds(latest: proofs.Latest, start: datetime, end: datetime) -> queries.LogFilters:
    return queries.LogFilters(since=start, until=end - timedelta(microseconds=1), below=latest.size)


def artifact_review(rt: Runtime, caller: Caller, item: Artifact, start: datetime) -> Review:
    """The review of ``item`` (already read under ``artifact.read``) over 30 days from ``start``."""
    authz.require(rt, caller, "audit.read_own", what="the audit log")
    latest = proofs.latest_checkpoint(rt)
    found: dict[int, Entry] = {}
    bounds = _bounds(latest, start, start + WINDOW)
    _collect(rt, caller, replace(bounds, artifact=item.id), found)
    return _review(
        rt, caller, "artifact", item.id, f"{item.name} ({item.org})", start, latest, found
    )


def agency_review(rt: Runtime, caller: Caller, agency: str, start: datetime) -> Review:
    """The review of everything agency ``agency`` did, and was decided for it, over 30 days."""
    authz.require(rt, caller, "audit.read_all", what="an agency's review")
    latest = proofs.latest_checkpoint(rt)
    bounds = _bounds(latest, start, start + WINDOW)
    own: dict[int, Entry] = {}
    _collect(rt, caller, replace(bounds, org=agency), own)
    members = report.agency_members(e.entry() for e in own.values())
    decided: dict[int, Entry] = {}
    for action in report.DECISIONS:
        _collect(rt, caller, replace(bounds, action=action), decided)
    for index, e in decided.items():
        if report.concerns(e.entry(), "agency", agency, members):
            own[index] = e
    return _review(rt, caller, "agency", agency, agency, start, latest, own)


def _review(
    rt: Runtime,
    caller: Caller,
    kind: str,
    subject: str,
    title: str,
    start: datetime,
    latest: proofs.Latest,
    found: dict[int, Entry],
) -> Review:
    entries = [found[i] for i in sorted(found)]
    decoded = [e.entry() for e in entries]
    persons = directory.people(
        rt, caller.actor, [d["actor"] for d in decoded] + [_grantee(d) for d in decoded]
    )
    rows = [_row(e, d, persons) for e, d in zip(entries, decoded, strict=True)]
    people, agencies = report.tally(decoded)
    names = directory.artifact_names(rt, caller.actor, [e.artifact for e in entries])
    end = start + WINDOW
    drawing = timeline.draw(
        [{**d, "when": r.when} for d, r in zip(decoded, rows, strict=True)],
        start,
        end,
        [f"{present.utc(r.when)}: {r.who} {r.what}" for r in rows],
    )
    return Review(
        kind, subject, title, start, end, latest, rows, people, agencies, names, persons, drawing
    )


def _grantee(d: dict[str, Any]) -> str | None:
    grantee = d["details"].get("grantee")
    return grantee if isinstance(grantee, str) else None


def _row(e: Entry, d: dict[str, Any], persons: dict[str, present.Person]) -> Row:
    sent = d["details"].get("bytes") if d["action"] == "content.download" else None
    what = present.action(d["action"])
    grantee = _grantee(d)
    if grantee is not None and d["action"] in report.DECISIONS:
        what += f" for {present.person(persons, grantee)}"
    return Row(e, d, e.time, present.person(persons, d["actor"]), what, sent)


def evidence(rt: Runtime, review: Review) -> list[tuple[int, str, str]]:
    """For each listed entry: its index, its leaf (base64) and its ``.tlog-proof`` text."""
    out = []
    for row in review.rows:
        proof = tlogproof.format_proof(proofs.proof_of(rt, row.entry.index, review.latest))
        out.append((row.entry.index, base64.b64encode(row.entry.leaf).decode(), proof.decode()))
    return out
