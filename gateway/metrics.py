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
