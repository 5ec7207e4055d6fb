"""The witness's HTTP interface (c2sp.org/tlog-witness "HTTP Interface"), as a WSGI app.

Routes, with one URL prefix serving as both submission and monitoring prefix (the spec
allows it):

- ``POST /add-checkpoint``: the body is read up to ``max_body`` bytes (413 beyond); the
  answer is the witness's: 200 with cosignature lines, 409 ``text/x.tlog.size`` with its
  size, or 400/403/404/422 with a one-line reason (``text/plain``).
- ``GET /<origin hash>/checkpoint`` ("Monitor Retrieval Mechanism"): the latest cosigned
  checkpoint of that log (its verified log signatures and the witness's cosignatures), 404 if
  the witness never cosigned one; ``Cache-Control: no-cache``, since it changes.
- ``GET /``: the witness's name, verifier keys and logs, for operators and readiness checks.

No request is authenticated beyond the checkpoint signature itself, as the spec intends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from gateway.witness.core import Refusal, Witness

log = logging.getLogger("gateway.witness")

DEFAULT_MAX_BODY = 256 * 1024
TEXT = "text/plain; charset=utf-8"
_CHECKPOINT = re.compile(r"/([0-9a-f]{64})/checkpoint")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
}


class WitnessApp:
    """WSGI application around a :class:`Witness`."""

    def __init__(self, witness: Witness, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.witness = witness
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        try:
            status, content_type, body, extra = self._route(method, path, environ)
        except Refusal as refusal:
            status, content_type, body, extra = (
                refusal.status,
                refusal.content_type,
                refusal.body,
                [],
            )
        except Exception:  # noqa: BLE001 - never a traceback to the client; the log has it
            log.exception("witness request %s %s failed", method, path)
            status, content_type, body, extra = 500, TEXT, b"internal error\n", []
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]

    def _route(
        self, method: str, path: str, environ: dict[str, Any]
    ) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        if path == "/add-checkpoint":
            if method != "POST":
                return 405, TEXT, b"use POST\n", [("Allow", "POST")]
            return 200, TEXT, self.witness.add_checkpoint(self._body(environ)), []
        match = _CHECKPOINT.fullmatch(path)
        if match or path == "/":
            if method not in ("GET", "HEAD"):
                return 405, TEXT, b"use GET\n", [("Allow", "GET, HEAD")]
            if path == "/":
                return 200, TEXT, self._home(), []
            assert match is not None
            data = self.witness.checkpoint(match.group(1))
            if data is None:
                return 404, TEXT, b"no cosigned checkpoint for this log\n", []
            return 200, TEXT, data, [("Cache-Control", "no-cache")]
        return 404, TEXT, b"not found\n", []

    def _body(self, environ: dict[str, Any]) -> bytes:
        length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not length.isdigit() and not chunked:
            raise Refusal(411, "the request needs a Content-Length")
        if length.isdigit() and int(length) > self.max_body:
            raise Refusal(413, f"the request body is over {self.max_body} bytes")
        data = bytes(environ["wsgi.input"].read(self.max_body + 1))
        if len(data) > self.max_body:
            raise Refusal(413, f"the request body is over {self.max_body} bytes")
        return data

    def _home(self) -> bytes:
        lines = [f"witness {self.witness.name}", ""]
        lines += [f"vkey {k}" for k in self.witness.verifier_keys()]
        lines += ["", *(f"log {origin}" for origin in sorted(self.witness.logs))]
        return ("\n".join(lines) + "\n").encode()
