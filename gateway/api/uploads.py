"""Upload routes (lab): create, parts, resume, complete, abort."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from gateway import events
from gateway.api.body import part_body
from gateway.api.common import actor, authenticate_request, authorize, gw, json_body
from gateway.errors import BadRequest
from gateway.models import Upload
from gateway.services import artifacts, uploads

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")
bp.before_request(authenticate_request)


def _load_own(upload_id: str, action: str) -> Upload:
    with gw().db.session() as session:
        upload = session.get(Upload, upload_id)
    if upload is None:
        authorize(action, False, what=f"upload {upload_id}")
        raise AssertionError("unreachable")  # pragma: no cover - authorize raises for foreign
    authorize(action, upload.org == actor().org, what=f"upload {upload_id}", subject_org=upload.org)
    return upload


@bp.post("")
def create() -> Any:
    authorize("upload.create", what="an upload")
    body = json_body()
    runtime = gw()
    with events.fail_closed(runtime) as session:
        upload = uploads.create(runtime, session, actor(), body)
    return uploads.upload_json(upload, []), 201


@bp.get("/<upload_id>")
def show(upload_id: str) -> Any:
    upload = _load_own(upload_id, "upload.read")
    with gw().db.session() as session:
        return uploads.upload_json(upload, uploads.parts_of(session, upload_id))


@bp.put("/<upload_id>/parts/<int(signed=True):number>")
def put_part(upload_id: str, number: int) -> Any:
    upload = _load_own(upload_id, "upload.write")
    runtime = gw()
    uploads.require_open(runtime, upload)
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        raise BadRequest("chunked part bodies are not accepted: send Content-Length")
    length, sha256 = uploads.check_part_request(
        upload, number, request.content_length or 0, request.headers.get("X-Content-SHA256")
    )
    # The server's own input, read exactly Content-Length bytes by the store (see body.py).
    body = part_body(request.environ, length)
    try:
        part = uploads.store_part(runtime, upload, number, length, sha256, body)
    finally:
        body.close()
    return {"number": part.number, "size": part.size, "sha256": part.sha256}


@bp.post("/<upload_id>/complete")
def complete(upload_id: str) -> Any:
    _load_own(upload_id, "upload.write")
    body = json_body()
    runtime = gw()
    artifact = uploads.complete(runtime, upload_id, actor(), body)
    return artifacts.artifact_json(artifact), 201


@bp.delete("/<upload_id>")
def abort(upload_id: str) -> Any:
    upload = _load_own(upload_id, "upload.write")
    runtime = gw()
    uploads.require_open(runtime, upload)
    with events.fail_closed(runtime) as session:
        uploads.abort(runtime, session, uploads.get_upload(session, upload_id), actor())
    return "", 204
