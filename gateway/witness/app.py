"""The witness's HTTP interface (c2sp.org/tlog-witness "HTTP Interface"), as a WSGI app.

Routes, with one URL prefix serving as both submission and monitoring prefix (the spec
allows it):

- ``POST /add-checkpoint``: the body is read up to ``max_body`` bytes (413 beyond; at most
  half the state's size limit, so what is stored always fits it); a body that does not arrive
  in time (:mod:`gateway.witness.worker`) gets 408 and the connection is closed. The answer is
  the witness's: 200 with cosignature lines, 409 ``text/x.tlog.size`` with its size, 429 with
  ``Retry-After`` when the log is over its budget, or 400/403/404/413/422 with a one-line
  reason (``text/plain``).
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
_LENGTH = re.compile(r"[0-9]{1,19}")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class WitnessApp:
    """WSGI application around a :class:`Witness`."""

    def __init__(self, witness: Witness, max_body: int = DEFAULT_MAX_BODY) -> None:
        limit = max_body_limit(witness.state.max_bytes)
        if not 1 <= max_body <= limit:
            raise ValueError(f"the largest request body must be 1 to {limit} bytes")
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
                refusal.headers,
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
        too_large = Refusal(413, f"the request body is over {self.max_body} bytes")
        if length and not _LENGTH.fullmatch(length):
            if length.isascii() and length.isdigit():
                raise too_large  # twenty digits or more
            raise Refusal(400, "the Content-Length is not a decimal number")
        if not length and not chunked:
            raise Refusal(411, "the request needs a Content-Length")
        if length and int(length) > self.max_body:
            raise too_large
        try:
            data = bytes(environ["wsgi.input"].read(self.max_body + 1))
        except OSError:  # the client stalled past its deadline (the worker then closes), or left
            raise Refusal(408, "the request body did not arrive in time") from None
        if len(data) > self.max_body:
            raise too_large
        return data

    def _home(self) -> bytes:
        lines = [f"witness {self.witness.name}", ""]
        lines += [f"vkey {k}" for k in self.witness.verifier_keys()]
        lines += ["", *(f"log {origin}" for origin in sorted(self.witness.logs))]
        return ("\n".join(lines) + "\n").encode()


def max_body_limit(state_bytes: int) -> int:
    """The largest ``max_body`` for a state limit: half, leaving room for the cosignatures."""
    return state_bytes // 2
