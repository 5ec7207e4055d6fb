"""One error hierarchy for the whole gateway.

Each error carries an HTTP status, an RFC 9457 problem type and the response headers its
answer needs (``WWW-Authenticate``, ``Content-Range``, ``Retry-After``), so one renderer
answers every problem (:mod:`gateway.api.problems`) and the CLI prints any of them as one
line (``gateway: error: ...``). Nothing here imports Flask: the client uses it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_BASE = "https://gateway.local/problems/"


class GatewayError(Exception):
    """Base of every error the gateway reports to a client or an operator."""

    status = 500
    slug = "internal-error"
    title = "Internal error"
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {**self.default_headers, **(headers or {})}

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
    default_headers = {"WWW-Authenticate": 'Bearer realm="gateway"'}


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


class UnsupportedMediaType(GatewayError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class RangeNotSatisfiable(GatewayError):
    """A byte range that starts past the end; the answer names the size in ``Content-Range``."""

    status, slug, title = 416, "range-not-satisfiable", "Range not satisfiable"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail, headers={"Content-Range": f"bytes */{size}"}, size=size)
        self.size = size


class Unprocessable(GatewayError):
    status, slug, title = 422, "unprocessable", "Unprocessable content"


class TooManyRequests(GatewayError):
    """Past a rate limit; ``Retry-After`` says in how many seconds to try again."""

    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(0, retry_after))})
        self.retry_after = retry_after


class InsufficientStorage(GatewayError):
    """Past an organisation's quota, or below the free-space floor: nothing was stored."""

    status, slug, title = 507, "insufficient-storage", "Insufficient storage"


class ServiceUnavailable(GatewayError):
    status, slug, title = 503, "unavailable", "Service unavailable"


class AuditUnavailable(ServiceUnavailable):
    slug, title = "audit-unavailable", "Audit log unavailable"
