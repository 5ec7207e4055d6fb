"""Properties of the readers of client input: JSON bodies, integers, cursors, age headers.

Each reader either gives back what an honest client meant or refuses with the gateway's
own 4xx error; no input makes one raise anything else (which would be a 500).
"""

from __future__ import annotations

import base64
import contextlib
import json
import string
from datetime import datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import age
from gateway.age import format as age_format
from gateway.api.inputs import decimal, nesting, parse_json, read_bounded
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.paging import MAX_INT, Keyset
from gateway.services import access, auditlog
from gateway.services import artifacts as artifact_service

DEPTH = 32
TRICKY = st.text(alphabet='[]{}"\\:, ab\u00e9\U0001f600', max_size=12)
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TRICKY
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=30,
)


def depth(value: Any) -> int:
    """The naive reference: how deeply a parsed value's lists and dicts nest."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(VALUES, st.booleans())
def test_nesting_counts_what_the_parser_would_nest_whatever_the_strings_hold(
    value: Any, ascii_only: bool
) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting(raw) == depth(value)


@given(VALUES)
def test_a_document_within_the_bounds_reads_back_as_it_was_written(value: Any) -> None:
    raw = json.dumps(value).encode()
    if depth(value) <= DEPTH:
        assert parse_json(raw, DEPTH) == value
    else:
        with pytest.raises(BadRequest):
            parse_json(raw, DEPTH)


@settings(max_examples=300)
@given(
    st.binary(max_size=300)
    | st.text(alphabet='[]{}"\\:,0123456789eE.-+ntrufalsNIy\ud800', max_size=200).map(
        lambda s: s.encode("utf-8", "surrogatepass")
    )
)
def test_any_bytes_are_a_value_or_a_400(raw: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_json(raw, DEPTH)


@given(st.integers(1, 4), st.integers(0, 200))
def test_any_depth_past_the_bound_is_refused_before_parsing(extra: int, filler: int) -> None:
    raw = b"[" * (DEPTH + extra) + b" " * filler + b"]" * (DEPTH + extra)
    with pytest.raises(BadRequest, match="nests deeper"):
        parse_json(raw, DEPTH)


class Trickle:
    """A stream that hands out its bytes a few at a time, as a slow client would."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def read(self, n: int = -1) -> bytes:
        take = min(self.step, n if n >= 0 else self.step)
        piece = self.data[self.pos : self.pos + take]
        self.pos += len(piece)
        return piece


@given(st.integers(-3, 3) | st.integers(-1024, 2048), st.integers(1, 700), st.integers(1024, 2048))
@example(1, 1, 1024).via("one byte too many, a byte at a time")
def test_a_body_is_read_whole_up_to_its_limit_and_never_past_limit_plus_one(
    beyond: int, step: int, limit: int
) -> None:
    data = bytes(range(256)) * ((limit + beyond) // 256 + 1)
    data = data[: max(0, limit + beyond)]
    stream = Trickle(data, step)
    if len(data) <= limit:
        assert read_bounded(stream, limit) == data  # type: ignore[arg-type]
    else:
        with pytest.raises(PayloadTooLarge):
            read_bounded(stream, limit)  # type: ignore[arg-type]
        assert stream.pos <= limit + 1


def reference_decimal(text: str) -> int | None:
    ok = text != "" and all(c in string.digits for c in text) and len(text) <= 19
    return int(text) if ok and int(text) <= MAX_INT else None


@settings(max_examples=300)
@given(
    st.text(alphabet=string.digits + "\uff10\uff11\u0661\u00b2\u2460+-_ x", max_size=25)
    | st.integers(0, 2**64).map(str)
    | st.integers(MAX_INT - 5, MAX_INT + 5).map(str)
)
@example(str(MAX_INT)).via("the largest")
@example(str(MAX_INT + 1)).via("one past it, 19 digits")
@example("9" * 19).via("19 nines")
def test_an_integer_from_a_client_is_ascii_digits_below_2_63(text: str) -> None:
    assert decimal(text) == reference_decimal(text)


KEYSETS = [auditlog.ORDER, artifact_service.ORDER, access.REQUEST_ORDER, access.GRANT_ORDER]


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@settings(max_examples=200)
@given(
    st.sampled_from(KEYSETS),
    st.text(max_size=80)
    | st.lists(st.integers(-(2**70), 2**70) | st.text(max_size=40), max_size=3).map(cursor_of)
    | st.recursive(st.integers(), lambda i: st.lists(i, max_size=2), max_leaves=50).map(cursor_of),
)
def test_a_cursor_decodes_to_its_keys_or_is_400(keyset: Keyset, cursor: str) -> None:
    try:
        values = keyset.decode(cursor)
    except BadRequest:
        return
    assert len(values) == len(keyset.keys)
    for key, value in zip(keyset.keys, values, strict=True):
        assert isinstance(value, key.kind)
        if isinstance(value, int):
            assert 0 <= value <= MAX_INT


class Row:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


@given(
    st.integers(0, MAX_INT),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=40),
)
def test_a_cursor_the_gateway_issued_decodes_to_the_row_it_came_from(
    index: int, when: datetime, ident: str
) -> None:
    for keyset in KEYSETS:
        values = [
            index if k.kind is int else when if k.kind is datetime else ident for k in keyset.keys
        ]
        row = Row(**{k.column.key: v for k, v in zip(keyset.keys, values, strict=True)})
        assert keyset.decode(keyset.cursor(row)) == values


# --- age headers: structured text near the grammar, not only random bytes --------------------

WORDS = st.text(
    alphabet=string.ascii_letters + string.digits + "+/=-_\x7f", min_size=0, max_size=12
)
BODY = st.binary(max_size=120).map(lambda b: base64.b64encode(b).rstrip(b"="))


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    lines = [draw(st.sampled_from([b"age-encryption.org/v1", b"age-encryption.org/v2", b""]))]
    for _ in range(draw(st.integers(0, 3))):
        words = draw(st.lists(WORDS, min_size=1, max_size=3))
        lines.append(b"-> " + " ".join(words).encode())
        body = draw(BODY)
        cut = draw(st.sampled_from([64, 63, 65]))
        lines += [body[i : i + cut] for i in range(0, len(body), cut)] or [b""]
        if len(body) % 64 == 0 and draw(st.booleans()):
            lines.append(b"")
    mac = base64.b64encode(draw(st.binary(min_size=31, max_size=33))).rstrip(b"=")
    lines.append(draw(st.sampled_from([b"--- ", b"---", b"-- "])) + mac)
    return (
        b"\n".join(lines)
        + draw(st.sampled_from([b"\n", b"", b"\r\n"]))
        + draw(st.binary(max_size=8))
    )


@settings(max_examples=300)
@given(headers())
def test_a_header_near_the_grammar_parses_canonically_or_is_an_age_error(data: bytes) -> None:
    try:
        parsed = age_format.parse_header(data)
    except age.AgeError:
        return
    assert age_format.encode_header(parsed.stanzas, parsed.mac) == parsed.raw
    assert data.startswith(parsed.raw)
