"""The rules of the server's edge, apart from the event loop that applies them.

:mod:`gateway.worker` owns the sockets; this module holds what it decides with, each
piece testable without a server: which lane a request goes to (:func:`lane_of`), the
limits taken from ``[server]`` (:class:`EdgeLimits`), the minimum-rate rule
(:class:`RateGuard`), where a chunked body ends on the wire (:class:`ChunkedScanner`),
and the ``application/problem+json`` answers for requests the application never sees
(:func:`problem_response`, :func:`protocol_problem`).

The environ keys below are how the application learns what the edge did.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from gunicorn.http import errors as http_errors

from gateway.config import ServerConfig
from gateway.errors import PROBLEM_BASE

#: ``environ`` key: True when the edge read the whole request body before the
#: application ran, at most ``max_json_bytes`` raw bytes, so ``wsgi.input`` never blocks.
ENVIRON_BODY_BOUNDED = "gateway.edge.body_bounded"
#: ``environ`` key: the :class:`RateGuard` that part-body reads must report to.
ENVIRON_RATE_GUARD = "gateway.edge.rate_guard"

REQUEST, UPLOAD, DOWNLOAD = "request", "upload", "download"
_PART = re.compile(r"/v1/uploads/[^/]+/parts/[^/]+")
_CONTENT = re.compile(r"/v1/artifacts/[^/]+/content|/download/[^/]+")


def lane_of(method: str, path: str) -> str:
    """The thread pool a request is served from: part bodies and content have their own.

    Each lane has its own threads, so clients holding every upload or download thread
    still leave the rest of the API (health checks, metadata, small parts) answering.
    """
    if method == "PUT" and _PART.fullmatch(path):
        return UPLOAD
    if method in ("GET", "HEAD") and _CONTENT.fullmatch(path):
        return DOWNLOAD
    return REQUEST


@dataclass(frozen=True)
class EdgeLimits:
    """The ``[server]`` bounds the worker enforces, in the units it uses (seconds, bytes)."""

    header_timeout: float
    idle_timeout: float
    body_timeout: float
    send_timeout: float
    min_rate: int
    grace: float
    max_header_bytes: int
    max_json_bytes: int
    max_buffered_bytes: int

    @classmethod
    def from_config(cls, s: ServerConfig) -> EdgeLimits:
        return cls(
            header_timeout=float(s.header_timeout_seconds),
            idle_timeout=float(s.idle_timeout_seconds),
            body_timeout=float(s.body_timeout_seconds),
            send_timeout=float(s.send_timeout_seconds),
            min_rate=s.min_rate_bytes_per_second,
            grace=float(s.min_rate_grace_seconds),
            max_header_bytes=s.max_header_bytes,
            max_json_bytes=s.max_json_bytes,
            max_buffered_bytes=s.max_buffered_bytes,
        )

    def guard(self, direction: str) -> RateGuard:
        """A guard for one transfer: ``"receive"`` (a request body) or ``"send"`` (a response)."""
        timeout = self.body_timeout if direction == "receive" else self.send_timeout
        return RateGuard(self.min_rate, self.grace, direction, timeout)


class Stalled(TimeoutError):
    """A client moved its bytes slower than the edge allows; the connection is dropped.

    ``reason`` is ``"timeout"`` (nothing moved for a whole timeout) or ``"min_rate"``
    (bytes moved, but fewer than the minimum rate over a window). ``direction`` is
    ``"receive"`` or ``"send"``. Distinct from a client that closed, which reads as EOF.
    """

    def __init__(self, reason: str, direction: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.direction = reason, direction


class RateGuard:
    """The minimum-rate rule for one transfer: after a grace period, each window must move enough.

    Windows are ``grace`` seconds long and start when the transfer does; from the end of
    the first one on, every window must move at least ``min_rate * grace`` bytes. A fast
    start buys no credit for a later trickle. ``min_rate`` 0 turns the rule off (the
    per-read timeouts still hold). ``timeout`` is the longest a single read or write of
    this transfer may wait: the socket's timeout while it runs.
    """

    def __init__(
        self,
        min_rate: int,
        grace: float,
        direction: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_rate, self.grace, self.direction = min_rate, grace, direction
        self.timeout, self.clock = timeout, clock
        self.restart()

    def restart(self) -> None:
        self.window_start = self.clock()
        self.window_bytes = 0
        # Why it tripped, never the exception itself: a kept exception's traceback would
        # hold the transfer's frames (and their buffers) in a cycle until a GC pass.
        self.tripped: tuple[str, str] | None = None

    def check(self, moved: int = 0) -> None:
        """Count ``moved`` bytes; raise :class:`Stalled` when a finished window fell short."""
        if self.tripped is not None:
            raise Stalled(self.tripped[0], self.direction, self.tripped[1])
        self.window_bytes += moved
        if self.min_rate <= 0:
            return
        elapsed = self.clock() - self.window_start
        if elapsed < self.grace:
            return
        if self.window_bytes < self.min_rate * elapsed:
            self.trip(
                "min_rate",
                f"{self.window_bytes} bytes in {elapsed:.1f}s, below the minimum rate"
                f" of {self.min_rate} bytes/s",
            )
        self.window_start += elapsed
        self.window_bytes = 0

    def trip(self, reason: str, detail: str) -> NoReturn:
        self.tripped = (reason, detail)
        raise Stalled(reason, self.direction, detail)


class ChunkedScanner:
    """Finds where a chunked body ends on the wire, fed the raw bytes as they arrive.

    Only framing is checked here (hex sizes, CRLF after each chunk, the trailer
    section's blank line); gunicorn's own parser decodes the body afterwards and
    checks the rest. :meth:`feed` returns how many bytes of ``data`` belong to the
    body once its end is seen, else None; malformed framing raises ``ValueError``.
    """

    _LINE_LIMIT = 8192

    def __init__(self) -> None:
        self.line = bytearray()
        self.state = "size"  # size -> data -> crlf -> size ...; last size 0 -> trailer
        self.left = 0
        self.scanned = 0

    def feed(self, data: bytes) -> int | None:
        i = 0
        while i < len(data):
            if self.state == "data":
                step = min(self.left, len(data) - i)
                i += step
                self.left -= step
                if self.left == 0:
                    self.state = "crlf"
                continue
            nl = data.find(b"\n", i)
            end = len(data) if nl < 0 else nl + 1
            self.line += data[i:end]
            i = end
            if len(self.line) > self._LINE_LIMIT:
                raise ValueError("a chunk-size or trailer line is too long")
            if nl >= 0 and self._line_done():
                self.scanned += i
                return i
        self.scanned += len(data)
        return None

    def _line_done(self) -> bool:
        line = bytes(self.line)
        self.line.clear()
        if not line.endswith(b"\r\n"):
            raise ValueError("a line of the chunked body does not end with CRLF")
        if self.state == "crlf":
            if line != b"\r\n":
                raise ValueError("a chunk is longer than its size says")
            self.state = "size"
        elif self.state == "size":
            digits = line[:-2].split(b";", 1)[0].strip(b" \t")
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", digits):
                raise ValueError(f"invalid chunk size {digits[:20]!r}")
            self.left = int(digits, 16)
            self.state = "data" if self.left else "trailer"
        elif line == b"\r\n":  # the blank line that ends the trailer section
            return True
        return False


@dataclass(frozen=True)
class Problem:
    status: int
    reason: str
    slug: str
    title: str
    detail: str


def problem_response(problem: Problem) -> bytes:
    """A whole HTTP/1.1 response with a problem+json body, closing the connection."""
    body = json.dumps(
        {
            "type": PROBLEM_BASE + problem.slug,
            "title": problem.title,
            "status": problem.status,
            "detail": problem.detail,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {problem.status} {problem.reason}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def too_large(limit: int, what: str) -> Problem:
    return Problem(
        413,
        "Payload Too Large",
        "payload-too-large",
        "Payload too large",
        f"{what} is larger than this server accepts ({limit} bytes)",
    )


def head_too_large(limit: int) -> Problem:
    return Problem(
        431,
        "Request Header Fields Too Large",
        "header-too-large",
        "Request header fields too large",
        f"the request head is larger than this server accepts ({limit} bytes)",
    )


def timed_out(what: str, seconds: float) -> Problem:
    return Problem(
        408,
        "Request Timeout",
        "request-timeout",
        "Request timeout",
        f"{what} did not arrive within {seconds:g}s",
    )


def too_slow(min_rate: int) -> Problem:
    return Problem(
        408,
        "Request Timeout",
        "request-timeout",
        "Request timeout",
        f"the request body arrived slower than {min_rate} bytes/s",
    )


def busy() -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        "unavailable",
        "Service unavailable",
        "the server is holding too many request bodies; try again shortly",
    )


def bad_framing(detail: str) -> Problem:
    return Problem(400, "Bad Request", "bad-request", "Bad request", detail)


def internal_error() -> Problem:
    return Problem(
        500,
        "Internal Server Error",
        "internal-error",
        "Internal error",
        "an internal error occurred",
    )


_PROTOCOL: list[tuple[type[BaseException], int, str, str]] = [
    (http_errors.LimitRequestLine, 414, "URI Too Long", "the request line is too long"),
    (
        http_errors.LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "the request has too many header fields, or one too large",
    ),
    (http_errors.InvalidRequestMethod, 400, "Bad Request", "the request method is not valid"),
    (http_errors.InvalidHTTPVersion, 400, "Bad Request", "the HTTP version is not supported"),
    (http_errors.InvalidRequestLine, 400, "Bad Request", "the request line is not valid"),
    (http_errors.InvalidHeaderName, 400, "Bad Request", "a header name is not valid"),
    (http_errors.ObsoleteFolding, 400, "Bad Request", "obsolete header line folding"),
    (
        http_errors.UnsupportedTransferCoding,
        501,
        "Not Implemented",
        "the Transfer-Encoding is not supported",
    ),
    (http_errors.ExpectationFailed, 417, "Expectation Failed", "the Expect header is not met"),
    (http_errors.InvalidChunkSize, 400, "Bad Request", "the chunked body is malformed"),
    (http_errors.ChunkMissingTerminator, 400, "Bad Request", "the chunked body is malformed"),
    (http_errors.InvalidChunkExtension, 400, "Bad Request", "the chunked body is malformed"),
    (http_errors.NoMoreData, 400, "Bad Request", "the request ended early"),
]
_SLUGS = {400: "bad-request", 414: "uri-too-long", 417: "expectation-failed"}
_SLUGS |= {431: "header-too-large", 501: "not-implemented"}
_TITLES = {400: "Bad request", 414: "URI too long", 417: "Expectation failed"}
_TITLES |= {431: "Request header fields too large", 501: "Not implemented"}


def protocol_problem(exc: BaseException) -> Problem | None:
    """The problem+json answer to one of gunicorn's HTTP parse errors, None for anything else.

    The detail says what was wrong, never echoing the client's bytes beyond a header's name.
    """
    if isinstance(exc, http_errors.InvalidHeader):
        name = str(getattr(exc, "hdr", "") or "").split(":")[0][:64]
        if name.upper() in ("CONTENT-LENGTH", "TRANSFER-ENCODING"):
            detail = f"the {name.title()} header is not valid, or conflicts with another"
        else:
            detail = "a header is not valid"
        return Problem(400, "Bad Request", "bad-request", "Bad request", detail)
    for kind, status, reason, detail in _PROTOCOL:
        if isinstance(exc, kind):
            return Problem(status, reason, _SLUGS[status], _TITLES[status], detail)
    if isinstance(exc, http_errors.ParseException):
        return bad_framing("the request is not valid HTTP/1.1")
    return None
