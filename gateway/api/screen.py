"""Screening every request's strings before a view, a service or the database sees them.

One ``before_request`` hook (:func:`init_app`, installed on the API's app and the
dashboard's alike) checks, for every route:

- each path parameter: an id (``artifact_id``, ``request_id``, ...: every name ending
  ``_id``) is 1-64 characters of the id alphabet ``A-Za-z0-9_-`` (the gateway issues
  ``art_`` and 20 hex digits, and ``me`` names the caller); an organisation (``org``,
  ``agency``) is an organisation name (:mod:`gateway.orgname`); anything else (a tile's
  path) is at most :data:`MAX_PATH` characters with no control character;
- each query parameter, name and value: at most :data:`MAX_QUERY` characters, no control
  character (none of them is free text, so tab and newline are refused too);
- each header the gateway parses (:data:`HEADERS`): no control character but tab;
- on the dashboard only (:func:`init_forms`), each POST's body: at most
  :data:`MAX_FORM` bytes and ``application/x-www-form-urlencoded`` (the forms' encoding;
  anything else is 415), each field with no control character but tab, newline and
  carriage return, which a text area sends. It is read only for a route that exists and
  takes POST, so no other request has its body read here; the API parses no form at all.

A control character is U+0000-U+001F or U+007F; a lone surrogate (U+D800-U+DFFF) is
refused wherever it appears. PostgreSQL cannot store U+0000 in text at all, and SQLite
would store it and show it to others later: either way such a value is a 400 naming the
parameter before anything is read or written. JSON bodies are screened by the same rule
where they are parsed (:func:`gateway.api.inputs.parse_json`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Flask, request

from gateway import orgname
from gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_QUERY = 8192
"""The longest query parameter (name or value), past any a parameter's own rule takes (a
list cursor is at most 1024) and past the request line the server reads (4094 bytes)."""
MAX_PATH = 512
"""The longest path parameter that is not an id (a tile's path is about 40)."""
HEADERS = ("Authorization", "Cookie", "If-Range", "Range", "X-Content-SHA256", "X-Request-Id")
"""The request headers the gateway reads."""

ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z", re.ASCII)
_ORGS = frozenset({"org", "agency"})
# C0 controls, DEL and lone surrogates; the second and third spare what free text may hold.
_ANY = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_BUT_TAB = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_BUT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_FORM = "application/x-www-form-urlencoded"
MAX_FORM = 64 * 1024
"""The largest dashboard form body: its longest field, a justification, is 4,096 characters."""


def refused(value: str, free_text: bool = False) -> str | None:
    """What ``value`` holds that the gateway refuses (a control or a lone surrogate), or None.

    ``free_text`` spares tab, newline and carriage return.
    """
    found = (_BUT_TEXT if free_text else _ANY).search(value)
    if found is None:
        return None
    char = ord(found.group())
    if 0xD800 <= char <= 0xDFFF:
        return "a lone surrogate (\\ud800-\\udfff)"
    return f"the control character U+{char:04X}"


def _check(kind: str, name: str, value: str, pattern: re.Pattern[str] = _ANY) -> None:
    found = pattern.search(value)
    if found is not None:
        what = refused(found.group()) or "a control character"
        raise BadRequest(f"{kind} {_shown(name)} holds {what}, which the gateway never accepts")


def _shown(name: str) -> str:
    clean = _ANY.sub("?", name[:64])
    return repr(clean)


def path_parameter(name: str, value: str) -> None:
    """400 unless path parameter ``name`` is what a route of that name takes (see the top)."""
    _check("path parameter", name, value)
    if name.endswith("_id"):
        if not ID.match(value):
            raise BadRequest(
                f"path parameter {name!r} must be an id: 1-64 letters, digits, '_' or '-'"
            )
    elif name in _ORGS:
        if not orgname.NAME.match(value):
            raise BadRequest(
                f"path parameter {name!r} must be an organisation name: 1-64 lowercase "
                "letters, digits, '.', '_' or '-'"
            )
    elif len(value) > MAX_PATH:
        raise BadRequest(f"path parameter {name!r} is longer than {MAX_PATH} characters")


def query_parameters(pairs: Iterable[tuple[str, str]]) -> None:
    """400 for the first query parameter that is too long or holds a control character."""
    for name, value in pairs:
        _check("query parameter", name, name)
        _check("query parameter", name, value)
        if len(name) > MAX_QUERY or len(value) > MAX_QUERY:
            raise BadRequest(
                f"query parameter {_shown(name)} is longer than {MAX_QUERY} characters"
            )


def _screen() -> None:
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            path_parameter(name, value)
    query_parameters(request.args.items(multi=True))
    for header in HEADERS:
        given = request.headers.get(header)
        if given is not None:
            _check("header", header, given, _BUT_TAB)


def _screen_form() -> None:
    if request.method != "POST" or request.routing_exception is not None:
        return  # no form, or a route that does not exist or take POST: its own 404 or 405
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise PayloadTooLarge(f"a form is at most {MAX_FORM} bytes")
    declared = request.mimetype
    if declared != _FORM and (
        declared or request.content_length or request.headers.get("Transfer-Encoding")
    ):  # an empty POST with no type is a form without fields
        raise UnsupportedMediaType(f"the dashboard's forms are sent as {_FORM}")
    for name, value in request.form.items(multi=True):
        _check("form field", name, name)
        _check("form field", name, value, _BUT_TEXT)


def init_app(app: Flask) -> None:
    """Screen every request of ``app`` (after its request id is given, before any view)."""
    app.before_request(_screen)


def init_forms(app: Flask) -> None:
    """Screen the form of every POST to ``app`` (the dashboard), bounded by :data:`MAX_FORM`
    (also ``app``'s ``MAX_CONTENT_LENGTH``, so a body sent without a length is cut there)."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM
    app.before_request(_screen_form)
