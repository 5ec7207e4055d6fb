"""Artifacts: what a principal may see of them, according to its role."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.clock import rfc3339
from gateway.db import page
from gateway.models import Artifact
from gateway.services.identity import Actor


def artifact_json(a: Artifact) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "org": a.org,
        "description": a.description,
        "size": a.size,
        "state": a.state,
        "share_with": a.share_with,
        "submitted_at": rfc3339(a.submitted_at),
        "review_ends_at": rfc3339(a.review_ends_at),
        "ended_at": rfc3339(a.ended_at),
        "upload": a.upload_id,
        "manifest": a.manifest,
        "signature": a.signature,
    }


def visible(session: Session, who: Actor, limit: int, offset: int) -> tuple[list[Artifact], bool]:
    """The artifacts ``who`` may list, newest first, and whether more follow."""
    query = select(Artifact).order_by(Artifact.submitted_at.desc(), Artifact.id)
    if who.role == "lab":
        return page(session, query.where(Artifact.org == who.org), limit, offset)
    if who.role == "evaluator":
        # share_with is a JSON list: filter in Python, streaming through the rows.
        rows = []
        skipped = 0
        for a in session.scalars(query).yield_per(500):
            if who.org in a.share_with:
                if skipped < offset:
                    skipped += 1
                    continue
                rows.append(a)
                if len(rows) > limit:
                    break
        return rows[:limit], len(rows) > limit
    return page(session, query, limit, offset)
