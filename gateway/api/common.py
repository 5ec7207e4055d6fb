"""What every view needs: the runtime, the actor, JSON bodies, lists, authorisation."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import current_app, g, request

from gateway import policy
from gateway.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from gateway.events import record_denial
from gateway.runtime import Gateway
from gateway.services.identity import Actor

MAX_JSON_BYTES = 1 << 20


def gw() -> Gateway:
    return current_app.extensions["gateway"]  # type: ignore[no-any-return]


def actor() -> Actor:
    return g.actor  # type: ignore[no-any-return]


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a clear 400/413."""
    length = request.content_length
    if length is not None and length > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"a JSON body may be at most {MAX_JSON_BYTES} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"a JSON body may be at most {MAX_JSON_BYTES} bytes")
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    import json

    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True
) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise BadRequest(f"field {name!r} is required")
        return None
    value = body[name]
    if isinstance(value, bool) and kind is int:
        raise BadRequest(f"field {name!r} must be an integer")
    if not isinstance(value, kind):
        label = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRequest(f"field {name!r} must be of type {label}")
    return value


def page_args() -> tuple[int, int]:
    """``(limit, offset)`` from ``?limit=`` (1-1000, default 100) and the opaque ``?cursor=``."""
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise BadRequest("limit must be an integer between 1 and 1000") from None
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be an integer between 1 and 1000")
    cursor = request.args.get("cursor")
    offset = 0
    if cursor:
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadRequest("cursor is not one this gateway issued") from None
        if offset < 0:
            raise BadRequest("cursor is not one this gateway issued")
    return limit, offset


def page(items: list[Any], limit: int, offset: int, more: bool) -> dict[str, Any]:
    nxt = (
        base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=")
        if more
        else None
    )
    return {"items": items, "next_cursor": nxt}


def authorize(
    action: str,
    own: bool = True,
    *,
    what: str = "the resource",
    artifact: str | None = None,
    grant: str | None = None,
    subject_org: str | None = None,
) -> None:
    """Ask the policy; on refusal record ``auth.denied`` and raise 403 or 404."""
    who = actor()
    decision = policy.decide(who.role, action, own)
    if decision is policy.Decision.ALLOW:
        return
    reason = "hidden" if decision is policy.Decision.HIDE else "forbidden"
    record_denial(
        gw(), who, action, reason, artifact=artifact, grant=grant, subject_org=subject_org
    )
    if decision is policy.Decision.HIDE:
        raise NotFound(f"{what} was not found")
    raise Forbidden(f"a principal with role {who.role} may not do {action} on {what}")


def authenticate_request() -> None:
    """``before_request`` of every ``/v1`` blueprint: the bearer token becomes ``g.actor``."""
    from gateway.services.identity import authenticate

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    runtime = gw()
    with runtime.db.session() as session:
        g.actor = authenticate(session, token.strip() or None, runtime.now())
