"""The answers the server's edge gives itself, as ``application/problem+json``.

Requests the application never sees (bad HTTP, timeouts, bodies past their limit, a
server too busy to take them) are answered from the event loop with these; the detail
says what was wrong, never echoing the client's bytes beyond a header's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gunicorn.http import errors as http_errors

from gateway.errors import PROBLEM_BASE


@dataclass(frozen=True)
class Problem:
    """One answer: its status line, problem type and detail; ``retry_after`` in seconds, if any."""

    status: int
    reason: str
    slug: str
    title: str
    detail: str
    retry_after: int | None = None


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
    retry = "" if problem.retry_after is None else f"Retry-After: {problem.retry_after}\r\n"
    head = (
        f"HTTP/1.1 {problem.status} {problem.reason}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{retry}Connection: close\r\n\r\n"
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


def _unavailable(detail: str) -> Problem:
    return Problem(503, "Service Unavailable", "unavailable", "Service unavailable", detail, 1)


def _too_many(detail: str) -> Problem:
    return Problem(429, "Too Many Requests", "too-many-requests", "Too many requests", detail, 1)


def busy() -> Problem:
    """The loop holds too many bytes for clients, and this connection holds the most."""
    return _unavailable("the server is holding too many request bytes; try again shortly")


def address_over_budget(limit: int) -> Problem:
    return _too_many(
        f"this client address holds more request and response bytes than it may ({limit});"
        " finish or close its other connections"
    )


def address_over_connections(limit: int) -> Problem:
    return _too_many(f"this client address has as many connections open as it may ({limit})")


def queue_timeout(seconds: float) -> Problem:
    return _unavailable(f"no thread was free to serve the request within {seconds:g}s")


def over_share(share: int) -> Problem:
    return _too_many(
        f"this client already has {share} transfers in progress, as many as it may at once;"
        " retry when one ends"
    )


def body_not_allowed(method: str) -> Problem:
    return bad_framing(f"a {method} request must not carry a body")


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
