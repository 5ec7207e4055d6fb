"""Prometheus metrics, in a registry of the process's own (no global side effects on import).

No label value ever comes from a client: methods and statuses are mapped onto fixed sets,
so anonymous requests cannot grow the registry.
"""

from __future__ import annotations

from flask import Request, Response
from prometheus_client import CollectorRegistry, Counter, generate_latest

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
STATUSES = frozenset(
    {200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409, 410, 411, 412, 413, 414}
    | {415, 416, 417, 422, 429, 431, 500, 501, 502, 503, 504, 507}
)
#: Why the server's edge closed a connection (see gateway.worker): a timeout or the minimum
#: rate; an idle one closed to make room for a new one ("evicted"); the one holding the most
#: bytes when the server held too many ("shed"); one past its address's connections or bytes
#: ("address_limit"); one that waited too long for a thread ("queue_timeout").
CLOSE_REASONS = (
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "send_timeout",
    "min_rate",
    "evicted",
    "shed",
    "address_limit",
    "queue_timeout",
)

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "gateway_http_requests", "HTTP requests answered", ["method", "status"], registry=REGISTRY
)
UNAUTHENTICATED = Counter(
    "gateway_unauthenticated_requests",
    "Requests refused 401 (not logged in the audit log)",
    registry=REGISTRY,
)
BYTES_IN = Counter("gateway_upload_bytes", "Ciphertext bytes received in parts", registry=REGISTRY)
BYTES_OUT = Counter("gateway_download_bytes", "Content bytes sent", registry=REGISTRY)
EDGE_CLOSED = Counter(
    "gateway_edge_closed_connections",
    "Connections the server closed because the client was too slow or idle, by reason",
    ["reason"],
    registry=REGISTRY,
)
EDGE_REJECTED = Counter(
    "gateway_edge_rejected_requests",
    "Requests the server answered itself, before the application (bad HTTP, timeouts), by status",
    ["status"],
    registry=REGISTRY,
)
EDGE_TOO_LARGE = Counter(
    "gateway_edge_too_large_bodies",
    "Request bodies refused 413 at the edge, without being read past the limit",
    registry=REGISTRY,
)
EDGE_ACCEPT_PAUSES = Counter(
    "gateway_edge_accept_pauses",
    "Times the server stopped accepting for a moment: no file descriptor or memory left",
    registry=REGISTRY,
)
for _reason in CLOSE_REASONS:
    EDGE_CLOSED.labels(_reason)


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def status_label(status: int) -> str:
    return str(status) if status in STATUSES else "other"


def observe_response(request: Request, response: Response) -> None:
    REQUESTS.labels(method_label(request.method), status_label(response.status_code)).inc()


def edge_closed(cause: str | BaseException) -> None:
    """Count a connection closed by a timeout or the minimum rate (a reason or a ``Stalled``)."""
    if isinstance(cause, str):
        reason = cause
    elif getattr(cause, "reason", "") == "min_rate":
        reason = "min_rate"
    else:
        reason = "send_timeout" if getattr(cause, "direction", "") == "send" else "body_timeout"
    EDGE_CLOSED.labels(reason if reason in CLOSE_REASONS else "body_timeout").inc()


def edge_rejected(status: int) -> None:
    EDGE_REJECTED.labels(status_label(status)).inc()


def edge_too_large() -> None:
    EDGE_TOO_LARGE.inc()


def edge_accept_paused() -> None:
    EDGE_ACCEPT_PAUSES.inc()


def render() -> bytes:
    return generate_latest(REGISTRY)


# --- bounds on abuse: every label below comes from a fixed set ----------------------------

RATE_SCOPES = ("principal", "address")
RATE_BUDGETS = ("reads", "writes", "parts", "content")
#: Why a request that carried no principal's token (a signed URL) was refused.
ANONYMOUS_REASONS = ("bad signature", "url expired", "grant revoked", "grant expired", "other")
QUOTAS = ("open_uploads", "bytes_in_flight", "free_space")

RATE_LIMITED = Counter(
    "gateway_rate_limited_requests",
    "Requests refused 429 past a rate budget, by who was counted and which budget",
    ["scope", "budget"],
    registry=REGISTRY,
)
DENIALS_COLLAPSED = Counter(
    "gateway_denials_collapsed",
    "Refusals counted as repeats of an earlier auth.denied entry instead of being entries",
    registry=REGISTRY,
)
ANONYMOUS_REFUSALS = Counter(
    "gateway_signed_url_refusals",
    "Signed-URL requests refused (counted, never logged: the holder is anonymous), by reason",
    ["reason"],
    registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "gateway_quota_refusals",
    "Uploads and parts refused 507, by the quota or floor they would have passed",
    ["quota"],
    registry=REGISTRY,
)
for _scope in RATE_SCOPES:
    for _budget in RATE_BUDGETS:
        RATE_LIMITED.labels(_scope, _budget)
for _anonymous in ANONYMOUS_REASONS:
    ANONYMOUS_REFUSALS.labels(_anonymous)
for _quota in QUOTAS:
    QUOTA_REFUSALS.labels(_quota)


def anonymous_refusal(reason: str) -> None:
    ANONYMOUS_REFUSALS.labels(reason if reason in ANONYMOUS_REASONS else "other").inc()
