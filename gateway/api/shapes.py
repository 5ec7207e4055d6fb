"""The JSON of every domain object the API answers with (the wire format of ``API.md``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from gateway.audit.store import Entry
from gateway.clock import rfc3339
from gateway.models import (
    AccessRequest,
    Artifact,
    Custody,
    CustodyType,
    Grant,
    Upload,
    UploadPart,
)
from gateway.paging import Page
from gateway.services.identity import OrgSigningKey, Profile
from gateway.services.lab_custody import UNCHECKED, ApprovalMaterial
from gateway.services.principals import PrincipalInfo

T = TypeVar("T")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def page(result: Page[T], shape: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    return {"items": [shape(item) for item in result.items], "next_cursor": result.next_cursor}


def artifact(a: Artifact) -> dict[str, Any]:
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
        "custody": a.custody,
        # What completion could not check without the file key (lab custody): say so.
        "unchecked": list(UNCHECKED) if a.custody == Custody.LAB else [],
    }


def upload(u: Upload, parts: list[UploadPart]) -> dict[str, Any]:
    hybrid = u.recipient.startswith("age1pq1")
    lab = u.custody == Custody.LAB
    return {
        "id": u.id,
        "name": u.name,
        "kind": u.kind,
        "org": u.org,
        "share_with": u.share_with,
        "description": u.description,
        "size": u.expected_size,
        "custody": u.custody,
        # Lab custody: no gateway recipient (the lab encrypts to its own).
        "recipient": None if lab else u.recipient,
        "recipient_type": None
        if lab
        else (CustodyType.MLKEM768X25519 if hybrid else CustodyType.X25519),
        "part_size": u.part_size,
        "max_parts": u.max_parts,
        "state": u.state,
        "created_at": rfc3339(u.created_at),
        "expires_at": rfc3339(u.expires_at),
        "artifact": u.artifact_id,
        "parts": [part(p) for p in parts],
    }


def part(p: UploadPart) -> dict[str, Any]:
    return {"number": p.number, "size": p.size, "sha256": p.sha256}


def request(r: AccessRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "artifact": r.artifact_id,
        "requester": r.principal_id,
        "org": r.org,
        "justification": r.justification,
        "duration_hours": r.duration_hours,
        "state": r.state,
        "created_at": rfc3339(r.created_at),
        "decided_at": rfc3339(r.decided_at),
        "decided_by": r.decided_by,
        "reason": r.reason,
        "grant": r.grant_id,
    }


def approval_material(m: ApprovalMaterial) -> dict[str, Any]:
    """What a lab approves a lab-custody request from (the header is not secret: it is the
    artifact's first bytes, its file key wrapped for the lab's own recipients)."""
    r = m.request
    return {
        "request": r.id,
        "artifact": r.artifact_id,
        "state": r.state,
        "custody": r.artifact.custody,
        "grantee": r.principal_id,
        "grantee_name": m.grantee_name,
        "org": r.org,
        "recipient": m.recipient,
        "header": b64(m.header),
        "header_size": len(m.header),
    }


def grant(g: Grant, now: datetime) -> dict[str, Any]:
    """A grant as the API shows it: never its header (key material for the grantee only)."""
    return {
        "id": g.id,
        "artifact": g.artifact_id,
        "request": g.request_id,
        "grantee": g.grantee_id,
        "org": g.org,
        "not_before": rfc3339(g.not_before),
        "not_after": rfc3339(g.not_after),
        "state": g.state_at(now),
        "ended_at": rfc3339(g.ended_at),
        "released_at": rfc3339(g.released_at),
        "recipient": g.recipient,
    }


def profile(p: Profile) -> dict[str, Any]:
    return {
        "name": p.name,
        "org": p.org,
        "role": p.role,
        "recipient": p.recipient,
        "signing_key": p.signing_key,
    }


def principal(p: PrincipalInfo) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "org": p.org, "role": p.role}


def signing_key(k: OrgSigningKey) -> dict[str, Any]:
    return {
        "public_key": k.public_key,
        "principal": k.principal,
        "created_at": rfc3339(k.created_at),
    }


def entry(e: Entry) -> dict[str, Any]:
    return {"index": e.index, "leaf": e.leaf_b64(), "entry": e.entry()}
