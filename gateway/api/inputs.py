"""Reading requests: JSON bodies, query parameters, and the typed inputs the services take.

A view turns what a client sent into a service's input here; JSON types are checked
here (a clear 400 naming the field), the values' rules where the input is defined.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, TypeVar

from flask import request

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.models import ArtifactKind, CustodyType
from gateway.paging import MAX_INT, MAX_LIMIT, PageRequest
from gateway.services.access import Approval, Denial, Filters, NewRequest
from gateway.services.auditlog import EntryFilters
from gateway.services.completion import Completion
from gateway.services.uploads import NewUpload

MAX_JSON_BYTES = 1 << 20

E = TypeVar("E", bound=StrEnum)


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
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def text(body: dict[str, Any], name: str) -> str:
    """Field ``name``, which must be a string."""
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(
            f"field {name!r} is required"
            if value is None
            else f"field {name!r} must be of type str"
        )
    return value


def _one_of(value: object, kind: type[E]) -> E | None:
    if isinstance(value, str) and value in kind._value2member_map_:
        return kind(value)
    return None


def _optional_int(body: dict[str, Any], name: str, message: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(message)
    return value


def page_request() -> PageRequest:
    """``?limit=`` (1-1000, default 100) and the opaque ``?cursor=`` of a list."""
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise BadRequest(f"limit must be an integer between 1 and {MAX_LIMIT}") from None
    return PageRequest(limit, request.args.get("cursor") or None)


def query_int(name: str, default: int | None = None, minimum: int = 0) -> int:
    """An integer query parameter between ``minimum`` and 2^63-1 (required without a default)."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter {name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer") from None
    if value < minimum:
        raise BadRequest(f"query parameter {name} must be at least {minimum}")
    if value > MAX_INT:
        raise BadRequest(f"query parameter {name} must be at most {MAX_INT}")
    return value


def query_text(name: str) -> str | None:
    """A query parameter, None when absent or empty."""
    return request.args.get(name) or None


def list_filters() -> Filters:
    return Filters(artifact=query_text("artifact"), state=query_text("state"))


def entry_filters() -> EntryFilters:
    return EntryFilters(
        start=query_int("start", 0),
        artifact=query_text("artifact"),
        actor=query_text("actor"),
        action=query_text("action"),
    )


# --- bodies ---------------------------------------------------------------------------------


def new_upload(body: dict[str, Any]) -> NewUpload:
    name = body.get("name")
    if not isinstance(name, str):
        raise BadRequest("field 'name' must be a non-empty string")
    kind = _one_of(body.get("kind"), ArtifactKind)
    if kind is None:
        raise BadRequest('field \'kind\' must be "weights" or "credential"')
    share_with = body.get("share_with")
    if not isinstance(share_with, list) or not all(isinstance(s, str) for s in share_with):
        raise BadRequest("field 'share_with' must be a non-empty list of agency organisation names")
    description = body.get("description", "") or ""
    if not isinstance(description, str):
        raise BadRequest("field 'description' must be a string of at most 4096 characters")
    size = _optional_int(
        body, "size", "field 'size' must be a positive integer (the expected ciphertext size)"
    )
    custody = _one_of(body.get("recipient_type", CustodyType.X25519), CustodyType)
    if custody is None:
        raise BadRequest(
            'field \'recipient_type\' must be "x25519" or "mlkem768x25519" (post-quantum hybrid)'
        )
    return NewUpload(name, kind, tuple(share_with), description, size, custody)


def completion(body: dict[str, Any]) -> Completion:
    return Completion(manifest=body.get("manifest"), signature=body.get("signature"))


_HOURS = "field 'duration_hours' must be an integer number of hours"


def new_request(body: dict[str, Any]) -> NewRequest:
    justification = body.get("justification")
    if not isinstance(justification, str):
        raise BadRequest(
            "field 'justification' must be a non-empty string of at most 4096 characters"
        )
    return NewRequest(justification, _optional_int(body, "duration_hours", _HOURS))


def approval(body: dict[str, Any]) -> Approval:
    return Approval(_optional_int(body, "duration_hours", _HOURS))


def denial(body: dict[str, Any]) -> Denial:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("field 'reason' must be a string of at most 4096 characters")
    return Denial(reason)
