"""Paging: every list pages by its own keys, and takes back only cursors the gateway issued."""

from __future__ import annotations

import base64
import json

import pytest
from flask.testing import FlaskClient

from gateway.clock import FrozenClock
from tests.api.conftest import Lab
from tests.conftest import Principals

LISTS = ("/v1/artifacts", "/v1/access-requests", "/v1/grants", "/v1/audit/entries")


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


NOT_OURS = [
    "%%%",
    "A" * 5000,
    base64.urlsafe_b64encode(b"9" * 25).decode(),  # an offset, as cursors once were
    _cursor([2**63]),
    _cursor([-1]),
    _cursor(["2026-11-26T12:00:00", "x", 1]),
    _cursor(["not a time", "art_x"]),
    _cursor(["2026-11-26T12:00:00+00:00", "art_x"]),
    _cursor({"a": 1}),
    _cursor([[[[[[[[[[1]]]]]]]]]]),
]


@pytest.mark.parametrize("path", LISTS)
def test_a_cursor_the_gateway_did_not_issue_is_400(
    client: FlaskClient, principals: Principals, path: str
) -> None:
    for cursor in NOT_OURS:
        r = client.get(path, query_string={"cursor": cursor}, headers=principals.auth("auditor"))
        assert r.status_code == 400, (cursor, r.get_json())
        assert r.mimetype == "application/problem+json"
        assert "cursor" in r.get_json()["detail"]


@pytest.mark.parametrize(
    "query",
    [
        "/v1/audit/entries?start=99999999999999999999999",
        "/v1/audit/entries?start=-1",
        "/v1/audit/entries?limit=1001",
        "/v1/audit/proof/inclusion?index=99999999999999999999999&size=1",
        "/v1/audit/proof/consistency?old=1&new=99999999999999999999999",
        "/v1/artifacts?limit=" + "9" * 5000,
    ],
)
def test_numbers_past_what_the_database_holds_are_400(
    client: FlaskClient, principals: Principals, query: str
) -> None:
    r = client.get(query, headers=principals.auth("auditor"))
    assert r.status_code == 400 and r.mimetype == "application/problem+json", r.get_json()


def test_rows_arriving_between_pages_are_neither_skipped_nor_repeated(
    lab: Lab, principals: Principals, clock: FrozenClock
) -> None:
    made = []
    for i in range(3):
        made.append(lab.push(b"m", name=f"model-{i}")["id"])
        clock.advance(seconds=1)
    c = lab.client
    first = c.get("/v1/artifacts?limit=2", headers=lab.auth).get_json()
    newest = lab.push(b"m", name="arrives-between-pages")["id"]
    second = c.get(
        "/v1/artifacts", query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=lab.auth
    ).get_json()
    seen = [a["id"] for a in first["items"] + second["items"]]
    assert seen == list(reversed(made)) and second["next_cursor"] is None
    assert c.get("/v1/artifacts?limit=1", headers=lab.auth).get_json()["items"][0]["id"] == newest


def test_ties_in_time_page_by_id(lab: Lab, principals: Principals) -> None:
    made = {lab.push(b"m", name=f"same-second-{i}")["id"] for i in range(3)}  # one clock tick
    seen: list[str] = []
    cursor = None
    for _ in range(5):  # three pages and the end; a cursor that does not advance stops here
        query = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = lab.client.get("/v1/artifacts", query_string=query, headers=lab.auth).get_json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 3
