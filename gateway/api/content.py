"""Content routes: the re-headered age file (Range honoured), download URLs, signed fetches."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from gateway.api.artifacts import load_artifact
from gateway.api.common import actor, authenticate_request, gw
from gateway.app import problem_response
from gateway.errors import NotFound, RangeNotSatisfiable
from gateway.models import Artifact
from gateway.services import content

bp = Blueprint("content", __name__)


@bp.before_request
def _auth() -> None:
    if request.endpoint != "content.signed":  # a signed URL is its own credential
        authenticate_request()


def _artifact(artifact_id: str) -> Artifact:
    artifact = load_artifact(artifact_id, "content.read")
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} was not found")
    return artifact


def _stream(download: content.Download) -> Response:
    return Response(
        download.body,
        status=download.status,
        headers=download.headers,
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )


def _unsatisfiable(exc: RangeNotSatisfiable) -> Response:
    return problem_response(
        exc.problem(), exc.status, {"Content-Range": f"bytes */{exc.extra.get('size', '*')}"}
    )


@bp.get("/v1/artifacts/<artifact_id>/content")
def download(artifact_id: str) -> Response:
    artifact = _artifact(artifact_id)
    try:
        result = content.download(
            gw(), actor(), artifact, request.headers.get("Range"), request.headers.get("If-Range")
        )
    except RangeNotSatisfiable as exc:
        return _unsatisfiable(exc)
    return _stream(result)


@bp.post("/v1/artifacts/<artifact_id>/download-url")
def download_url(artifact_id: str) -> Any:
    artifact = _artifact(artifact_id)
    base = gw().config.server.public_url or request.host_url
    return content.issue_url(gw(), actor(), artifact, base), 201


@bp.get(content.URL_ROUTE + "<artifact_id>")
def signed(artifact_id: str) -> Response:
    try:
        result = content.signed_download(
            gw(), artifact_id, request.args.to_dict(), request.headers.get("Range")
        )
    except RangeNotSatisfiable as exc:
        return _unsatisfiable(exc)
    return _stream(result)
