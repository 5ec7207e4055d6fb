"""Content routes: the re-headered age file (Range honoured), download URLs, signed fetches.

HTTP's part of a download is here: which bytes a request asks for (RFC 9110 §14: one
``bytes=`` range, parsed by Werkzeug; an ``If-Range`` that does not name this content
strongly sends it whole; other range forms are ignored, as §14.2 allows), and the 200 or
206 answer with ``Content-Length``, ``Content-Range``, ``Accept-Ranges`` and ``ETag``. What
is sent, and its audit entry, is :mod:`gateway.services.content`'s.

``HEAD`` answers the headers a GET would, and ``X-Key-Released``; it releases no key and
logs no download. Before the grant's key was ever released there is no header yet, so
there is no ``Content-Length`` either (``X-Key-Released: false``).

A transfer cut while it streams (its grant ended) ends the connection: under gunicorn the
socket is shut down, so the client sees the body end before its ``Content-Length``; under
another server the iterator raises, which every WSGI server answers by closing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request, url_for
from flask.typing import ResponseReturnValue

from gateway import metrics
from gateway.api import inputs, shapes
from gateway.api.context import authenticate_request, caller, runtime
from gateway.api.middleware import request_meta
from gateway.clock import rfc3339
from gateway.errors import Forbidden
from gateway.runtime import Runtime
from gateway.services import artifacts, urls
from gateway.services import content as contents

log = logging.getLogger("gateway.api.content")

bp = Blueprint("content", __name__)


@bp.before_request
def _auth() -> None:
    if request.endpoint != "content.signed":  # a signed URL is its own credential
        authenticate_request()


def _names_this(tag: str) -> bool:
    """Whether the request's ``If-Range``, if any, names this content (RFC 9110 §13.1.5).

    The comparison is strong: a weak entity tag or a date never matches.
    """
    sent = request.headers.get("If-Range")
    if sent is None:
        return True
    return not sent.strip().startswith("W/") and request.if_range.etag == tag


def _wanted(rt: Runtime, content: contents.ContentPlan) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of the one byte range asked for; None for everything."""
    if not _names_this(content.tag):
        return None
    asked = request.range
    if asked is None or asked.units != "bytes" or len(asked.ranges) != 1:
        return None
    total = content.total
    start, stop = asked.ranges[0]
    if start < 0:  # a suffix: the last -start bytes
        return max(0, total + start), total
    if start >= total:
        contents.refuse_range(rt, content, start)
    return start, total if stop is None else min(stop, total)


def _counted(chunks: Iterator[bytes], environ: dict[str, Any]) -> Iterator[bytes]:
    """``chunks``, counting the bytes sent; closing it closes the store's reader."""
    try:
        for chunk in chunks:
            metrics.BYTES_OUT.inc(len(chunk))
            yield chunk
    except contents.TransferCut as cut:
        log.warning("transfer cut: %s", cut)
        sock = environ.get("gunicorn.socket")
        if not isinstance(sock, socket.socket):
            raise
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _headers(rt: Runtime, content: contents.ContentPlan) -> tuple[int, dict[str, str], int, int]:
    """The status, headers and byte range ``[start, end)`` of the answer for ``content``."""
    wanted = _wanted(rt, content)
    start, end = wanted or (0, content.total)
    headers = {
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "ETag": f'"{content.tag}"',
    }
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.total}"
    return 200 if wanted is None else 206, headers, start, end


def _send(rt: Runtime, content: contents.ContentPlan) -> Response:
    status, headers, start, end = _headers(rt, content)
    return Response(
        _counted(contents.open_range(rt, content, start, end), request.environ),
        status=status,
        headers=headers,
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )


def _head(rt: Runtime, content: contents.ContentPlan | contents.Unreleased) -> Response:
    """The headers a GET would answer, without its body, its entry or a key release."""
    if isinstance(content, contents.Unreleased):
        status = 200
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{content.tag}"', "X-Key-Released": "false"}
    else:
        status, headers, _, _ = _headers(rt, content)
        headers["X-Key-Released"] = "true"
    # An iterator, not a sequence: Werkzeug then adds no Content-Length of its own.
    return Response(iter(()), status=status, headers=headers, mimetype="application/octet-stream")


@bp.get("/v1/artifacts/<artifact_id>/content")
def download(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    artifact = artifacts.get(rt, who, artifact_id, "content.read")
    if request.method == "HEAD":
        return _head(rt, contents.head(rt, who, artifact))
    return _send(rt, contents.plan(rt, who, artifact))


@bp.post("/v1/artifacts/<artifact_id>/download-url")
def download_url(artifact_id: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    artifact = artifacts.get(rt, who, artifact_id, "content.read")
    issued = urls.issue_url(rt, who, artifact)
    url = issued.presigned
    if url is None:
        base = rt.config.server.public_url or request.host_url
        path = url_for(
            "content.signed",
            artifact_id=artifact.id,
            grant=issued.grant,
            expires=issued.expires,
            sig=issued.signature,
        )
        url = base.rstrip("/") + path
    return {
        "header": shapes.b64(issued.header),
        "url": url,
        "payload_offset": issued.payload_offset,
        "expires_at": rfc3339(issued.expires_at),
        "grant": issued.grant,
    }, 201


@bp.get("/download/<artifact_id>")
def signed(artifact_id: str) -> ResponseReturnValue:
    args = request.args
    # ASCII digits only: int() would also take "+1", " 1", "1_0" and non-ASCII digits
    expires = inputs.decimal(args.get("expires", ""))
    if expires is None:
        raise Forbidden("the download URL is not valid: its expires is not a time in seconds")
    url = urls.SignedUrl(artifact_id, args.get("grant", ""), expires, args.get("sig", ""))
    rt = runtime()
    content = urls.signed_plan(rt, request_meta(), url)
    return _head(rt, content) if request.method == "HEAD" else _send(rt, content)
