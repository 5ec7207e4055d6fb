"""Reading requests: JSON bodies, integers, query parameters, and the typed inputs services take.

A view turns what a client sent into a service's input here; JSON types are checked
here (a clear 400 naming the field), the values' rules where the input is defined.

Everything a client sends is bounded before it is interpreted, in one place per kind:

- a JSON body (:func:`json_body`) is read from the stream at most ``server.max_json_bytes``
  + 1 bytes, whatever its framing (``Content-Length`` or chunked), and refused 413 past the
  limit without reading the rest; its nesting is measured before the parser can recurse
  (400 past ``limits.json_max_depth``); NaN, Infinity, duplicate keys, numbers outside
  signed 64 bits, lone surrogates, and control characters (U+0000-U+001F, U+007F) are 400,
  naming the field, except tab, newline and carriage return in a value, which free text
  (a justification, a reason, a description) may hold: a field that is a name or an id
  refuses them by its own rule;
- an integer from a query parameter, a header or a path (:func:`decimal`, and the
  :class:`AsciiIntConverter` the app routes ``int`` with) is ASCII digits only, at most 19
  of them, below 2^63.
"""

from __future__ import annotations

import base64
import json
import re
from enum import StrEnum
from typing import IO, Any, NoReturn, TypeVar

from flask import request
from werkzeug.exceptions import BadRequest as RoutingBadRequest
from werkzeug.routing import IntegerConverter, Map, ValidationError

from gateway.api import screen
from gateway.api.context import runtime
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.models import ArtifactKind, Custody, CustodyType
from gateway.paging import MAX_INT, MAX_LIMIT, PageRequest
from gateway.services.access import Approval, Denial, Filters, NewRequest
from gateway.services.auditlog import EntryFilters
from gateway.services.completion import Completion
from gateway.services.uploads import NewUpload

MIN_INT = -(1 << 63)
_DIGITS = re.compile(r"[0-9]{1,19}")
_READ_CHUNK = 64 << 10
# A JSON string, escapes included; possessive, so a long string costs one pass.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

E = TypeVar("E", bound=StrEnum)


# --- integers --------------------------------------------------------------------------------


def decimal(raw: str) -> int | None:
    """``raw`` as a non-negative integer: ASCII digits only, at most 19, below 2^63; else None."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_INT else None


class AsciiIntConverter(IntegerConverter):
    """Werkzeug's ``int`` converter, with ASCII digits only (``\\d`` matches ``０１`` too).

    A number of more than 19 digits, or at or past 2^63, is a 400 rather than no route.
    """

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = None,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
        self.regex = r"-?[0-9]+" if signed else r"[0-9]+"

    def to_python(self, value: str) -> int:
        digits = value.removeprefix("-")
        number = decimal(digits)
        if number is None:
            raise RoutingBadRequest(f"{value[:40]!r} is not a number below 2^63")
        if self.fixed_digits and len(digits) != self.fixed_digits:
            raise ValidationError()
        return -number if value.startswith("-") else number


# --- JSON bodies -----------------------------------------------------------------------------


def read_bounded(stream: IO[bytes], limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream``; 413 as soon as one more arrives (the rest unread)."""
    out = bytearray()
    while len(out) <= limit:
        piece = stream.read(min(_READ_CHUNK, limit + 1 - len(out)))
        if not piece:
            return bytes(out)
        out += piece
    raise PayloadTooLarge(f"a JSON body may be at most {limit} bytes")


def nesting(raw: bytes) -> int:
    """How deeply ``raw``'s arrays and objects nest, brackets inside strings not counted."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The JSON document ``raw``, or a 400 saying what is wrong with it (see the top)."""
    if nesting(raw) > max_depth:
        raise BadRequest(f"the JSON body nests deeper than {max_depth} levels")
    try:
        value = json.loads(
            raw,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_finite,
        )
    except _Refused as exc:
        raise BadRequest(str(exc)) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    _check_values(value, "")
    return value


class _Refused(ValueError):
    """A JSON value the gateway refuses even though Python's parser would take it."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the JSON body repeats the key {key[:64]!r} in one object")
        out[key] = value
    return out


def _constant(name: str) -> NoReturn:
    raise _Refused(f"the JSON body holds {name}, which JSON does not allow")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text[:40]} is too large")
    return value


def _check_values(value: Any, path: str, free_text: bool = True) -> None:
    """Refuse lone surrogates, control characters (but tab, newline and carriage return in
    values, which free text may hold) and integers past 64 bits."""
    if isinstance(value, str):
        what = screen.refused(value, free_text)
        if what is not None:
            raise BadRequest(
                f"field {_name(path)} holds {what}: strings must be valid Unicode "
                "without control characters"
            )
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise BadRequest(f"field {_name(path)} is an integer outside 64 bits")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_values(key, path, free_text=False)
            _check_values(item, f"{path}.{key}" if path else key)


def _name(path: str) -> str:
    return repr(path) if path else "of the body"


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a clear 400/413 (the rules are at the top)."""
    limit = runtime().config.server.max_json_bytes  # the same bound the edge applies
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"a JSON body may be at most {limit} bytes")
    raw = read_bounded(request.stream, limit)
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    body = parse_json(raw, runtime().config.limits.json_max_depth)
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
    limit = decimal(request.args.get("limit", "100"))
    if limit is None:
        raise BadRequest(f"limit must be an integer between 1 and {MAX_LIMIT}")
    return PageRequest(limit, request.args.get("cursor") or None)


def query_int(name: str, default: int | None = None, minimum: int = 0) -> int:
    """An integer query parameter between ``minimum`` and 2^63-1 (required without a default)."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter {name} is required")
        return default
    value = decimal(raw)
    if value is None:
        raise BadRequest(
            f"query parameter {name} must be an integer of ASCII digits, at most {MAX_INT}"
        )
    if value < minimum:
        raise BadRequest(f"query parameter {name} must be at least {minimum}")
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
    holder = _one_of(body.get("custody", Custody.GATEWAY), Custody)
    if holder is None:
        raise BadRequest(
            'field \'custody\' must be "gateway" (the gateway holds the key) or "lab" '
            "(the lab encrypts to its own recipients and makes each grant's header)"
        )
    if holder == Custody.LAB and "recipient_type" in body:
        raise BadRequest(
            "field 'recipient_type' is the gateway's custody key type; "
            'an upload with custody "lab" has no gateway key'
        )
    custody = _one_of(body.get("recipient_type", CustodyType.X25519), CustodyType)
    if custody is None:
        raise BadRequest(
            'field \'recipient_type\' must be "x25519" or "mlkem768x25519" (post-quantum hybrid)'
        )
    return NewUpload(name, kind, tuple(share_with), description, size, custody, holder)


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


_HEADER = (
    "field 'header' must be the base64 of the age header the lab made for the grantee "
    "(lab custody only)"
)


def approval(body: dict[str, Any]) -> Approval:
    """The approval; ``header`` (base64, bounded before decoding) and ``recipient`` are a
    lab-custody approval's (the service refuses them on other artifacts)."""
    header, recipient = body.get("header"), body.get("recipient")
    if header is not None:
        limit = runtime().config.uploads.max_header_bytes
        if not isinstance(header, str) or len(header) > 4 * (limit // 3 + 1):
            raise BadRequest(f"{_HEADER}, of at most {limit} bytes")
        try:
            header = base64.b64decode(header, validate=True)
        except ValueError:
            raise BadRequest(_HEADER) from None
    if recipient is not None and not isinstance(recipient, str):
        raise BadRequest("field 'recipient' must be the age recipient the header was made for")
    return Approval(_optional_int(body, "duration_hours", _HOURS), header, recipient)


def denial(body: dict[str, Any]) -> Denial:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("field 'reason' must be a string of at most 4096 characters")
    return Denial(reason)
