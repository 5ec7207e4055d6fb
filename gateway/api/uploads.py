"""Upload routes (lab): create, parts, resume, complete, abort."""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api import inputs, shapes
from gateway.api.body import part_body
from gateway.api.context import authenticate_request, caller, runtime
from gateway.errors import BadRequest
from gateway.services import completion, uploads
from gateway.storage import SHA256_HEX

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")
bp.before_request(authenticate_request)


@bp.post("")
def create() -> ResponseReturnValue:
    rt, who = runtime(), caller()
    authz.require(rt, who, "upload.create", what="an upload")
    upload = uploads.create(rt, who, inputs.new_upload(inputs.json_body()))
    return shapes.upload(upload, []), 201


@bp.get("/<upload_id>")
def show(upload_id: str) -> ResponseReturnValue:
    rt = runtime()
    upload = uploads.get(rt, caller(), upload_id, "upload.read")
    return shapes.upload(upload, uploads.parts(rt, upload))


def _new_part(number: int) -> uploads.NewPart:
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        raise BadRequest("chunked part bodies are not accepted: send Content-Length")
    sha256 = request.headers.get("X-Content-SHA256", "").lower()
    if not SHA256_HEX.match(sha256):
        raise BadRequest("header X-Content-SHA256 with the part's hex SHA-256 is required")
    return uploads.NewPart(number, request.content_length or 0, sha256)


@bp.put("/<upload_id>/parts/<int(signed=True):number>")
def put_part(upload_id: str, number: int) -> ResponseReturnValue:
    rt = runtime()
    upload = uploads.get(rt, caller(), upload_id, "upload.write")
    uploads.require_open(rt, upload)
    part = _new_part(number)
    uploads.check_part(upload, part.number, part.length)
    # The server's own input, read exactly Content-Length bytes by the store (see body.py).
    body = part_body(request.environ, part.length)
    try:
        stored = uploads.store_part(rt, upload, part, body)
    finally:
        body.close()
    return shapes.part(stored)


@bp.post("/<upload_id>/complete")
def complete(upload_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    uploads.get(rt, who, upload_id, "upload.write")
    done = inputs.completion(inputs.json_body())
    completed = completion.complete(rt, who, upload_id, done)
    return shapes.artifact(completed.artifact), 201 if completed.created else 200


@bp.delete("/<upload_id>")
def abort(upload_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    uploads.abort(rt, who, uploads.get(rt, who, upload_id, "upload.write"))
    return "", 204
