"""One error hierarchy for the whole gateway.

Each error carries an HTTP status and an RFC 9457 problem type; the API renders it as
``application/problem+json`` and the CLI as one line (``gateway: error: ...``).
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://gateway.local/problems/"


class GatewayError(Exception):
    """Base of every error the gateway reports to a client or an operator."""

    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body

    def diagnostics(self) -> str:
        return self.detail


class BadRequest(GatewayError):
    status, slug, title = 400, "bad-request", "Bad request"


class DigestMismatch(BadRequest):
    slug, title = "digest-mismatch", "Digest mismatch"


class Unauthorized(GatewayError):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class Forbidden(GatewayError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(GatewayError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(GatewayError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(GatewayError):
    status, slug, title = 410, "gone", "Gone"


class PayloadTooLarge(GatewayError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class RangeNotSatisfiable(GatewayError):
    status, slug, title = 416, "range-not-satisfiable", "Range not satisfiable"


class Unprocessable(GatewayError):
    status, slug, title = 422, "unprocessable", "Unprocessable content"


class ServiceUnavailable(GatewayError):
    status, slug, title = 503, "unavailable", "Service unavailable"


class AuditUnavailable(ServiceUnavailable):
    slug, title = "audit-unavailable", "Audit log unavailable"
