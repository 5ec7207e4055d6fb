"""No string a client can send gives a 500 or a false audit outage, on either database.

Control characters (U+0000 first: PostgreSQL cannot store it) and lone surrogates are
refused 400, naming the parameter, in JSON bodies, paths, queries, headers and dashboard
forms, with nothing stored; list cursors carry only ids; report days stay in the calendar.
The walk at the end sends bad values to every route of the API and of the dashboard.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from gateway.audit import store
from gateway.models import AccessRequest
from gateway.runtime import Runtime
from tests.conftest import Principals
from tests.web.conftest import Story, WebUser, csrf_of

NUL = "a\u0000b"


def problem(r: Any, status: int = 400) -> str:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == "application/problem+json"
    detail: str = r.get_json()["detail"]
    return detail


def page_error(r: Any, status: int = 400) -> str:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == "text/html"
    return str(r.get_data(as_text=True))


def _requests(rt: Runtime) -> int:
    with rt.db.session() as session:
        return session.query(AccessRequest).count()


def _size(rt: Runtime) -> int:
    with rt.db.session() as session:
        store.settle(session)
        return store.size(session)


def cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def test_a_nul_in_free_text_is_400_naming_the_field_and_stores_nothing(
    rt: Runtime, client: FlaskClient, principals: Principals, story: Story
) -> None:
    art, ev = story.artifact["id"], principals.auth("eval")
    before, logged = _requests(rt), _size(rt)
    for text in (NUL, "a\u001bb", "\u007f"):
        asked = client.post(
            f"/v1/artifacts/{art}/access-requests", json={"justification": text}, headers=ev
        )
        assert "'justification'" in problem(asked)
    denied = client.post(
        f"/v1/access-requests/{story.granted}/deny",
        json={"reason": "n\u0000o"},
        headers=principals.auth("lab"),
    )
    assert "'reason'" in problem(denied) and "U+0000" in denied.get_json()["detail"]
    keyed = client.post(
        f"/v1/artifacts/{art}/access-requests", json={"justi\tfication": "x"}, headers=ev
    )
    assert "control character" in problem(keyed)
    assert (_requests(rt), _size(rt)) == (before, logged)
    # free text keeps its tabs and line breaks
    multi = client.post(
        f"/v1/artifacts/{art}/access-requests",
        json={"justification": "line one\r\n\tline two"},
        headers=principals.auth("eval2"),
    )
    assert multi.status_code == 201, multi.get_json()
    assert multi.get_json()["justification"] == "line one\r\n\tline two"


def test_nul_in_ids_filters_and_headers_is_400_before_the_database(
    client: FlaskClient, principals: Principals, web: dict[str, WebUser]
) -> None:
    ev = principals.auth("eval")
    assert "'artifact_id'" in problem(client.get("/v1/artifacts/x%00y", headers=ev))
    assert "'artifact'" in problem(client.get("/v1/grants?artifact=x%00y", headers=ev))
    assert "'actor'" in problem(client.get("/v1/audit/entries?actor=%00", headers=ev))
    assert "parameter &#39;artifact_id&#39;" in page_error(web["eval"].get("/ui/artifacts/x%00y"))
    assert "&#39;artifact&#39;" in page_error(web["eval"].get("/ui/grants?artifact=%00"))
    # not the id alphabet (the id of a replaced invalid UTF-8 sequence), or overlong
    assert "an id" in problem(client.get("/v1/artifacts/x%ED%A0%80", headers=ev))
    assert "an id" in problem(client.get("/v1/artifacts/art_" + "0" * 80, headers=ev))
    assert "'org'" in problem(client.get("/v1/orgs/Lab%00/signing-keys", headers=ev))
    # ids the gateway never issued, in its alphabet, are still an honest 404
    assert client.get("/v1/artifacts/art_nope", headers=ev).status_code == 404
    tampered = {"Authorization": ev["Authorization"] + "\u0000"}
    assert "'Authorization'" in problem(client.get("/v1/me", headers=tampered))


def test_a_dashboard_form_with_a_nul_is_an_error_page_and_stores_nothing(
    rt: Runtime, web: dict[str, WebUser], story: Story
) -> None:
    art, before = story.artifact["id"], _requests(rt)
    page = f"/ui/artifacts/{art}"
    token = csrf_of(web["eval"].text(page))
    sent = web["eval"].client.post(
        f"/ui/artifacts/{art}/requests",
        data={"csrf_token": token, "justification": NUL},
    )
    assert "U+0000" in page_error(sent)
    assert _requests(rt) == before


@pytest.mark.parametrize(
    "key",
    [
        ["2020-01-01T00:00:00", "\ud800"],
        ["2020-01-01T00:00:00", "art_\u0000"],
        ["2020-01-01T00:00:00", "x" * 65],
        ["2020-01-01T00:00:00", "art nope"],
        ["2020-01-01T00:00:00\u0000", "art_1"],
    ],
)
def test_a_cursor_key_that_is_not_an_id_is_400_on_every_list(
    client: FlaskClient, principals: Principals, web: dict[str, WebUser], key: list[Any]
) -> None:
    c = cursor(key)
    for path in ("/v1/artifacts", "/v1/access-requests", "/v1/grants"):
        r = client.get(f"{path}?cursor={c}", headers=principals.auth("lab"))
        assert "cursor" in problem(r), path
    for path in ("/ui/artifacts", "/ui/requests", "/ui/grants"):
        assert "cursor" in page_error(web["lab"].get(f"{path}?cursor={c}")), path
    index = cursor(["\u0000"])
    r = client.get(f"/v1/audit/entries?cursor={index}", headers=principals.auth("auditor"))
    assert "cursor" in problem(r)


@pytest.mark.parametrize("when", ["9999-12-31", "9999-01-01", "0001-01-01", "1969-12-31"])
def test_report_and_log_days_outside_the_calendar_s_margin_are_400(
    web: dict[str, WebUser], story: Story, when: str
) -> None:
    art = story.artifact["id"]
    for who, path in (
        ("lab", f"/ui/reports/artifacts/{art}?from={when}"),
        ("lab", f"/ui/reports/artifacts/{art}/export?from={when}"),
        ("auditor", f"/ui/reports/agencies/agency-a?from={when}"),
        ("auditor", f"/ui/reports/agencies/agency-a/export?from={when}"),
        ("auditor", f"/ui/audit?since={when}"),
        ("auditor", f"/ui/audit?until={when}"),
    ):
        assert "must be a day from 1970-01-01 to 9998-12-31" in page_error(web[who].get(path)), path
    edge = web["auditor"].get("/ui/reports/agencies/agency-a?from=9998-12-31")
    assert edge.status_code == 200


# --- every route -------------------------------------------------------------------------

BAD = {"nul": "x%00y", "surrogate": "x%ED%A0%80y", "overlong": "art_" + "f" * 300}
QUERIES = (
    "artifact",
    "state",
    "actor",
    "action",
    "org",
    "outcome",
    "cursor",
    "limit",
    "start",
    "size",
    "first",
    "second",
    "index",
    "id",
    "from",
    "since",
    "until",
    "next",
    "expires",
    "grant",
    "sig",
)
_VAR = re.compile(r"<(?:([a-z]+)(?:\([^)]*\))?:)?([a-z_]+)>")


def _fill(rule: Rule, bad: str | None, target: str | None) -> str:
    def one(m: re.Match[str]) -> str:
        converter, name = m.group(1), m.group(2)
        if name == target and bad is not None:
            return bad
        return "1" if converter == "int" else ("agency-a" if name in ("org", "agency") else "zzz_1")

    return _VAR.sub(one, rule.rule)


def _routes(app: Flask) -> list[tuple[Rule, str]]:
    return [
        (rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]


def _answered(r: Any, web: bool, what: str) -> None:
    assert r.status_code < 500, (what, r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        assert r.mimetype == ("text/html" if web else "application/problem+json"), what


def test_every_route_answers_bad_path_and_query_values_with_a_4xx(
    app: Flask, client: FlaskClient, principals: Principals, web: dict[str, WebUser]
) -> None:
    dashboard = app.wsgi_app.mounts["/ui"]  # type: ignore[attr-defined]
    walks: list[tuple[bool, Flask, str]] = [(False, app, ""), (True, dashboard, "/ui")]
    auth = principals.auth("lab")
    for is_web, which, prefix in walks:
        routes = _routes(which)
        assert len(routes) > (15 if is_web else 30)
        for rule, method in routes:
            names = [m.group(2) for m in _VAR.finditer(rule.rule)]
            cases = [(label, bad, name) for name in names for label, bad in BAD.items()]
            cases += [(label, None, None) for label in BAD]
            for label, bad, name in cases:
                path = prefix + _fill(rule, bad, name)
                if bad is None:  # every query parameter, on a path of good values
                    path += "?" + "&".join(f"{q}={BAD[label]}" for q in QUERIES)
                what = f"{method} {path[:120]} ({label})"
                if is_web:
                    r = web["lab"].client.open(path, method=method)
                else:
                    r = client.open(path, method=method, headers=auth)
                _answered(r, is_web, what)
