"""Prometheus metrics, in a registry of the process's own (no global side effects on import)."""

from __future__ import annotations

from flask import Request, Response
from prometheus_client import CollectorRegistry, Counter, generate_latest

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


def observe_response(request: Request, response: Response) -> None:
    REQUESTS.labels(request.method, str(response.status_code)).inc()


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
