"""The C2SP tlog-tiles read API of the audit log, under ``/v1/audit/tlog/``.

- ``checkpoint``: the checkpoint the gateway serves, cosigned by its witnesses' quorum
  (:func:`gateway.services.cosigning.served`), ``text/plain; charset=utf-8``, cached a few
  seconds at most;
- ``signed-checkpoint``: the newest checkpoint the gateway signed, not yet cosigned, for
  proofs of entries newer than the published one (not a tlog-tiles resource);
- ``tile/<L>/<N>[.p/<W>]``: hash tiles, to whoever may read proofs (``audit.proof``);
- ``tile/entries/<N>[.p/<W>]``: entry bundles, to auditors only (``audit.bundles``: entries
  are not public), gzip-compressed when the client accepts it.

Tiles are ``application/octet-stream``; full ones are immutable and cached long, partial
ones a minute. Every answer is ``private``: each is for the principal that asked.
"""

from __future__ import annotations

import gzip

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from gateway import authz
from gateway.api.context import authenticate_request, caller, runtime
from gateway.audit.tiles import Bundle
from gateway.services import cosigning, tileread

bp = Blueprint("tlog", __name__, url_prefix="/v1/audit/tlog")

CHECKPOINT_CACHE = "private, max-age=5"
FULL_TILE_CACHE = "private, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "private, max-age=60"
TEXT = "text/plain; charset=utf-8"


@bp.before_request
def _auth() -> None:
    authenticate_request()


def _text(note: str) -> Response:
    response = Response(note, content_type=TEXT)
    response.headers["Cache-Control"] = CHECKPOINT_CACHE
    return response


@bp.get("/checkpoint")
def checkpoint() -> ResponseReturnValue:
    authz.require(runtime(), caller(), "audit.proof", what="audit checkpoints")
    return _text(cosigning.served(runtime()))


@bp.get("/signed-checkpoint")
def signed_checkpoint() -> ResponseReturnValue:
    authz.require(runtime(), caller(), "audit.proof", what="audit checkpoints")
    return _text(cosigning.sign_latest(runtime()).note)


@bp.get("/tile/<path:path>")
def tile(path: str) -> ResponseReturnValue:
    rt, who = runtime(), caller()
    found = tileread.parse("tile/" + path)
    if isinstance(found, Bundle):
        authz.require(rt, who, "audit.bundles", what="audit entry bundles")
        data = tileread.entry_bundle(rt, found)
    else:
        authz.require(rt, who, "audit.proof", what="audit hash tiles")
        data = tileread.hash_tile(rt, found)
    response = Response(mimetype="application/octet-stream")
    response.headers["Cache-Control"] = PARTIAL_TILE_CACHE if found.partial else FULL_TILE_CACHE
    if isinstance(found, Bundle):
        response.vary.add("Accept-Encoding")
        if request.accept_encodings["gzip"]:
            data = gzip.compress(data, mtime=0)
            response.headers["Content-Encoding"] = "gzip"
    response.set_data(data)
    return response
