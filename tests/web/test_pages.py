"""The dashboard makes no decision of its own: the same policy, the same entries as the API."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from gateway.audit import store
from gateway.audit.store import Entry
from gateway.runtime import Runtime
from gateway.web.base import CSP
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.web.conftest import WebUser, csrf_of

NASTY_NAME = 'm<script>alert(1)<script><img src=x onerror="alert(2)">'
NASTY_TEXT = '</textarea></script><script>alert(3)</script><b onmouseover="alert(4)">bold</b>'


def entries_since(rt: Runtime, start: int) -> list[dict[str, Any]]:
    with rt.db.session() as session:
        store.settle(session)
        rows = session.scalars(select(Entry).where(Entry.index >= start).order_by(Entry.index))
        return [e.entry() for e in rows]


def size(rt: Runtime) -> int:
    with rt.db.session() as session:
        store.settle(session)
        return len(list(session.scalars(select(Entry.index))))


def shape(entries: list[dict[str, Any]], ids: dict[str, str]) -> list[dict[str, Any]]:
    """Entries with what differs between two equal acts (ids, times, request ids) named alike."""

    def same(value: Any) -> Any:
        if isinstance(value, str):
            for real, name in ids.items():
                value = value.replace(real, name)
            value = re.sub(r"artifacts/[A-Za-z0-9_]+\.age", "OBJECT", value)
            return re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "TIME", value)
        if isinstance(value, dict):
            return {k: same(v) for k, v in value.items()}
        if isinstance(value, list):
            return [same(v) for v in value]
        return value

    drop = ("index", "time", "request_id", "ip", "prev")  # prev: where in each org's chain
    return [same({k: v for k, v in e.items() if k not in drop}) for e in entries]


def ask(client: FlaskClient, principals: Principals, who: str, artifact: str) -> dict[str, Any]:
    r = client.post(
        f"/v1/artifacts/{artifact}/access-requests",
        json={"justification": NASTY_TEXT},
        headers=principals.auth(who),
    )
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_an_approval_through_the_page_writes_the_apis_entries(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals, rt: Runtime
) -> None:
    art = lab.push(b"weights", name="model-x")["id"]
    by_api, by_page = ask(client, principals, "eval", art), ask(client, principals, "eval2", art)

    start = size(rt)
    r = client.post(
        f"/v1/access-requests/{by_api['id']}/approve",
        json={"duration_hours": 5},
        headers=principals.auth("lab"),
    )
    assert r.status_code == 201
    api_grant = r.get_json()
    api_entries = entries_since(rt, start)

    start = size(rt)
    page = f"/ui/requests/{by_page['id']}"
    r = web["lab"].post(page, page + "/approve", duration_hours="5")
    assert r.status_code == 303 and r.headers["Location"] == page
    page_entries = entries_since(rt, start)
    page_grant = entries_since(rt, start)[0]["grant"]

    assert [e["action"] for e in api_entries] == ["access.approve"]
    assert shape(
        page_entries, {by_page["id"]: "REQ", by_page["requester"]: "WHO", page_grant: "G"}
    ) == shape(api_entries, {by_api["id"]: "REQ", by_api["requester"]: "WHO", api_grant["id"]: "G"})
    shown = web["lab"].text(page)
    assert "approved" in shown and "eval2 (agency-a)" in shown


def test_deny_revoke_and_withdraw_through_the_pages_write_the_apis_entries(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals, rt: Runtime
) -> None:
    pushed = [lab.push(b"w", name=n) for n in ("by-api", "by-page")]
    acts = []
    for made, through_page in ((pushed[0], False), (pushed[1], True)):
        art = made["id"]
        denied, granted = (
            ask(client, principals, "eval", art),
            ask(client, principals, "eval2", art),
        )
        start = size(rt)
        if through_page:
            page = f"/ui/requests/{denied['id']}"
            assert web["lab"].post(page, page + "/deny", reason="not now").status_code == 303
        else:
            client.post(
                f"/v1/access-requests/{denied['id']}/deny",
                json={"reason": "not now"},
                headers=principals.auth("lab"),
            )
        grant = client.post(
            f"/v1/access-requests/{granted['id']}/approve", headers=principals.auth("lab")
        ).get_json()["id"]
        middle = size(rt)
        if through_page:
            back = f"/ui/artifacts/{art}"
            assert web["lab"].post(back, f"/ui/grants/{grant}/revoke", back=back).status_code == 303
            confirm = f"/ui/artifacts/{art}/withdraw"
            assert web["lab"].post(confirm, confirm, confirm="by-page").status_code == 303
        else:
            client.delete(f"/v1/grants/{grant}", headers=principals.auth("lab"))
            client.delete(f"/v1/artifacts/{art}", headers=principals.auth("lab"))
        done = entries_since(rt, start)
        ids = {
            denied["id"]: "R1",
            granted["id"]: "R2",
            denied["requester"]: "E1",
            granted["requester"]: "E2",
            grant: "G",
            art: "A",
        }
        acts.append(shape(done[: middle - start - 1] + done[middle - start :], ids))
    assert [e["action"] for e in acts[0]] == [
        "access.deny",
        "grant.revoke",
        "artifact.withdraw",
        "object.delete",  # the stored object, deleted after the shred committed
    ]
    assert acts[1] == acts[0]


def test_a_withdrawal_needs_the_name_typed_and_says_what_it_destroys(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals, rt: Runtime
) -> None:
    art = lab.push(b"w", name="model-y")["id"]
    ask(client, principals, "eval", art)
    confirm = f"/ui/artifacts/{art}/withdraw"
    page = web["lab"].text(confirm)
    assert "custody key of model-y is deleted" in page and "1 pending request is" in page
    start = size(rt)
    r = web["lab"].post(confirm, confirm, confirm="model-x")
    assert r.status_code == 400 and "not this artifact" in r.get_data(as_text=True)
    assert size(rt) == start
    assert "available" in web["lab"].text(f"/ui/artifacts/{art}")


@pytest.mark.parametrize(
    ("who", "path", "api"),
    [
        ("lab_b", "/ui/artifacts/{art}", "/v1/artifacts/{art}"),
        ("eval_b", "/ui/artifacts/{art}", "/v1/artifacts/{art}"),
        ("lab_b", "/ui/requests/{req}", "/v1/access-requests/{req}"),
        ("eval_b", "/ui/requests/{req}", "/v1/access-requests/{req}"),
        ("lab_b", "/ui/artifacts/{art}/withdraw", None),
        ("lab_b", "/ui/reports/artifacts/{art}", None),
        ("lab", "/ui/artifacts/art_00000000000000000000", "/v1/artifacts/art_00000000000000000000"),
    ],
)
def test_another_organisations_object_is_not_found_as_in_the_api(
    lab: Lab,
    web: dict[str, WebUser],
    client: FlaskClient,
    principals: Principals,
    who: str,
    path: str,
    api: str | None,
) -> None:
    art = lab.push(b"w")["id"]
    req = ask(client, principals, "eval", art)["id"]
    r = web[who].get(path.format(art=art, req=req))
    assert r.status_code == 404, r.get_data(as_text=True)[:500]
    assert "was not found" in r.get_data(as_text=True)
    if api is not None:
        assert (
            client.get(api.format(art=art, req=req), headers=principals.auth(who)).status_code
            == 404
        )


def test_another_labs_decision_is_refused_and_changes_nothing(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals, rt: Runtime
) -> None:
    art = lab.push(b"w")["id"]
    req = ask(client, principals, "eval", art)["id"]
    token = csrf_of(web["lab_b"].text("/ui/artifacts"))
    r = web["lab_b"].client.post(f"/ui/requests/{req}/approve", data={"csrf_token": token})
    assert r.status_code == 404
    denied = entries_since(rt, size(rt) - 1)[0]
    assert denied["action"] == "auth.denied" and denied["details"]["attempted"] == "access.decide"
    shown = client.get(f"/v1/access-requests/{req}", headers=principals.auth("lab")).get_json()
    assert shown["state"] == "pending"


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    app: Any,
    lab: Lab,
    web: dict[str, WebUser],
    client: FlaskClient,
    principals: Principals,
    rt: Runtime,
) -> None:
    art = lab.push(b"w")["id"]
    req = ask(client, principals, "eval", art)["id"]
    start = size(rt)
    other = WebUser(app.test_client(), principals.tokens["lab"])
    other.sign_in()
    foreign = csrf_of(other.text("/ui/artifacts"))  # the same lab's token, another session
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "x" * 40}, {"csrf_token": foreign}):
        r = web["lab"].client.post(f"/ui/requests/{req}/approve", data=data)
        assert r.status_code == 400, data
        assert "did not come from this dashboard" in r.get_data(as_text=True)
    assert size(rt) == start
    shown = client.get(f"/v1/access-requests/{req}", headers=principals.auth("lab")).get_json()
    assert shown["state"] == "pending"
    # forms without fields of their own (revoke, sign out) rest on the same check
    grant = client.post(f"/v1/access-requests/{req}/approve", headers=principals.auth("lab"))
    start = size(rt)
    for path in (f"/ui/grants/{grant.get_json()['id']}/revoke", "/ui/sign-out"):
        r = web["lab"].client.post(path, data={"csrf_token": foreign})
        assert r.status_code == 400, path
    assert size(rt) == start
    assert web["lab"].get("/ui/artifacts").status_code == 200  # still signed in
    grants = client.get("/v1/grants", headers=principals.auth("lab")).get_json()["items"]
    assert [g["state"] for g in grants] == ["active"]


def test_names_and_justifications_with_markup_are_shown_inert(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals
) -> None:
    art = lab.push(b"w", name=NASTY_NAME)["id"]
    req = ask(client, principals, "eval", art)["id"]
    pages = {
        "lab": ["/ui/artifacts", f"/ui/artifacts/{art}", f"/ui/requests/{req}", "/ui/requests"],
        "eval": ["/ui/artifacts", f"/ui/requests/{req}"],
        "auditor": [
            f"/ui/reports/artifacts/{art}",
            f"/ui/reports/artifacts/{art}/export",
            "/ui/audit",
        ],
    }
    for who, paths in pages.items():
        for path in paths:
            html = web[who].text(path)
            found = _Inputs()
            found.feed(html)
            assert found.inline == [], path  # no script element, no event handler attribute
            assert "<script" not in html.lower() and "<b onmouseover" not in html, path
            text = "".join(found.text)
            assert NASTY_NAME in text or NASTY_TEXT in text or path == "/ui/audit", path


def test_every_answer_carries_the_security_headers(
    app: Any, web: dict[str, WebUser], lab: Lab
) -> None:
    art = lab.push(b"w")["id"]
    answers = [
        app.test_client().get("/ui/sign-in"),
        app.test_client().get("/ui/artifacts"),  # the redirect to sign in
        web["lab"].get("/ui/artifacts"),
        web["lab"].get(f"/ui/artifacts/{art}"),
        web["lab_b"].get(f"/ui/artifacts/{art}"),  # 404
        web["eval"].get("/ui/audit"),  # 403
        web["lab"].get("/ui/static/style.css"),
        web["auditor"].get("/ui/audit?since=yesterday"),  # 400
        web["auditor"].get("/ui/no-such-page"),  # 404, a page too
    ]
    for r in answers:
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
    assert answers[-1].status_code == 404 and answers[-1].mimetype == "text/html"
    assert "frame-ancestors 'none'" in CSP and "script-src" not in CSP
    assert "default-src 'none'" in CSP


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.text: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.controls.append(a)
        if tag == "script" or "style" in a or any(k.startswith("on") for k in a):
            self.inline.append(tag)


def test_every_input_has_a_label_and_no_page_has_inline_script_or_style(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals, app: Any
) -> None:
    art = lab.push(b"w")["id"]
    req = ask(client, principals, "eval", art)["id"]
    pages = [
        (WebUser(app.test_client(), ""), "/ui/sign-in"),
        (web["lab"], f"/ui/requests/{req}"),
        (web["lab"], f"/ui/artifacts/{art}/withdraw"),
        (web["lab"], "/ui/requests"),
        (web["auditor"], "/ui/audit"),
        (web["auditor"], f"/ui/reports/artifacts/{art}"),
    ]
    art2 = lab.push(b"w", name="other")["id"]
    pages.append((web["eval"], f"/ui/artifacts/{art2}"))  # the request form
    for user, path in pages:
        found = _Inputs()
        found.feed(user.text(path))
        assert found.controls, path
        for control in found.controls:
            assert control.get("id") in found.labels, (path, control)
        assert found.inline == [], path


def test_the_log_browser_filters_and_pages(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals, rt: Runtime
) -> None:
    art = lab.push(b"w")["id"]
    ask(client, principals, "eval", art)
    client.get(f"/v1/artifacts/{art}/content", headers=principals.auth("eval_b"))  # denied
    auditor = web["auditor"]
    html = auditor.text("/ui/audit?outcome=denied")
    assert "<td>auth.denied</td>" in html and "<td>access.request</td>" not in html
    assert "eval-b (agency-b)" in html
    html = auditor.text("/ui/audit?org=agency-a")
    assert "<td>access.request</td>" in html and "<td>auth.denied</td>" not in html
    assert "No entries match" in auditor.text("/ui/audit?since=2026-11-27")
    day = auditor.text("/ui/audit?since=2026-11-26&until=2026-11-26")
    assert "<td>access.request</td>" in day
    assert "No entries match" in auditor.text("/ui/audit?until=2026-11-25")
    r = auditor.get("/ui/audit?since=26/11/2026")
    assert r.status_code == 400 and "YYYY-MM-DD" in r.get_data(as_text=True)
    first = auditor.text("/ui/audit")
    assert 'rel="next"' not in first  # one page
    assert first.count('href="/ui/audit/entries/') == size(rt)
    # the lab sees only the entries about its own artifacts
    mine = web["lab"].text("/ui/audit")
    assert "auth.denied" in mine  # the refusal was on its artifact
    assert "No entries match" in web["lab_b"].text("/ui/audit")


def test_the_entry_page_verifies_the_proof_and_shows_a_forged_entry_failing(
    lab: Lab, web: dict[str, WebUser], rt: Runtime
) -> None:
    lab.push(b"w")
    html = web["auditor"].text("/ui/audit/entries/1")
    assert "✓ Inclusion verified" in html and "Entry 1 is in the log of" in html
    proof = web["auditor"].get("/ui/audit/entries/1.tlog-proof")
    assert proof.get_data(as_text=True).startswith("c2sp.org/tlog-proof@v1\nindex 1\n")
    with rt.db.session() as session:
        leaf = session.get(Entry, 1)
        assert leaf is not None
        forged = leaf.leaf.replace(b'"ok"', b'"no"')
        session.execute(update(Entry).where(Entry.index == 1).values(leaf=forged))
    html = web["auditor"].text("/ui/audit/entries/1")
    assert "✗ Not verified" in html and "not proven" in html


def test_the_dashboard_names_only_the_people_the_api_would_name(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals
) -> None:
    """An evaluator's log view holds its agency's other evaluators' entries, never their names."""
    art = lab.push(b"w", share_with=["agency-a"])["id"]
    ask(client, principals, "eval2", art)
    eval2_id = client.get("/v1/principals/me", headers=principals.auth("eval2")).get_json()["id"]
    refused = client.get(f"/v1/principals/{eval2_id}", headers=principals.auth("eval"))
    assert refused.status_code == 404
    html = web["eval"].text("/ui/audit")
    assert "<td>access.request</td>" in html  # the entry concerns eval's agency
    assert "eval2 (agency-a)" not in html and eval2_id in html
    assert "eval2 (agency-a)" in web["auditor"].text("/ui/audit")


def test_a_lab_custody_request_page_gives_the_command_that_approves_it_and_a_deny_form(
    lab: Lab, web: dict[str, WebUser], client: FlaskClient, principals: Principals
) -> None:
    """A browser holds no lab key: the page names the command, and denial still works there."""
    from gateway import age
    from tests import helpers

    upload = lab.create(custody="lab")
    plaintext = b"lab-held weights"
    recipient = str(age.X25519Identity.generate().to_recipient())
    data = helpers.age_file(recipient, plaintext)
    lab.put_all(upload, data)
    done = lab.complete(upload, data, plaintext)
    assert done.status_code == 201, done.get_json()
    req = ask(client, principals, "eval", done.get_json()["id"])
    page = f"/ui/requests/{req['id']}"
    html = web["lab"].text(page)
    assert f"gateway approve {req['id']} -i LAB_IDENTITY" in html
    assert f'action="/ui/requests/{req["id"]}/approve"' not in html
    r = web["lab"].post(page, f"/ui/requests/{req['id']}/deny", reason="not now")
    assert r.status_code in (200, 303), r.get_data(as_text=True)[:500]
    state = client.get(f"/v1/access-requests/{req['id']}", headers=principals.auth("lab"))
    assert state.get_json()["state"] == "denied"
