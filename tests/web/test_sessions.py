"""Signing in once with a token: a server-side session that never outlives or outgrows it."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from gateway.clock import FrozenClock
from gateway.runtime import Runtime
from gateway.services import identity
from gateway.web.models import WebSession
from tests.conftest import Principals
from tests.web.conftest import WebUser, csrf_of


def _app(rt: Runtime, **settings: object) -> Flask:
    """The app with some settings changed, over the same database and clock."""
    from gateway.app import create_app

    changed = Runtime(rt.config.replace(**settings), clock=rt.clock, database=rt.db)
    return create_app(changed.config, runtime=changed)


def _cookie(response_headers: list[str], name: str) -> str:
    found = [h for h in response_headers if h.startswith(name + "=")]
    assert len(found) == 1, response_headers
    return found[0]


def test_sign_in_sets_a_strict_http_only_cookie_and_stores_only_a_hash(
    app: Flask, principals: Principals, rt: Runtime
) -> None:
    user = WebUser(app.test_client(), principals.tokens["lab"])
    r = user.sign_in()
    assert r.status_code == 303 and r.headers["Location"] == "/ui/"
    cookie = _cookie(r.headers.getlist("Set-Cookie"), "gw_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP without a TLS proxy: a Secure cookie would be lost
    secret = cookie.split(";")[0].split("=", 1)[1]
    with rt.db.session() as session:
        row = session.scalars(select(WebSession)).one()
    stored = " ".join(str(v) for v in vars(row).values())
    assert secret not in stored and principals.tokens["lab"] not in stored
    assert row.secret_hash == identity.hash_token(secret)  # the same SHA-256
    assert "gw_" not in r.headers.get("Location", "")


def test_behind_a_tls_proxy_the_cookie_is_secure_and_host_prefixed(
    rt: Runtime, principals: Principals
) -> None:
    app = _app(rt, **{"web.behind_tls_proxy": True})
    client = app.test_client()
    page = client.get("/ui/sign-in")
    assert "__Host-gw_sign_in=" in page.headers["Set-Cookie"]
    r = client.post(
        "/ui/sign-in",
        data={
            "token": principals.tokens["lab"],
            "csrf_token": csrf_of(page.get_data(as_text=True)),
        },
    )
    cookie = _cookie(r.headers.getlist("Set-Cookie"), "__Host-gw_session")
    assert "Secure" in cookie and "Path=/;" in cookie + ";" and "Domain" not in cookie
    assert client.get("/ui/artifacts").status_code == 200


def test_a_bad_token_is_refused_and_leaves_no_session(
    app: Flask, principals: Principals, rt: Runtime
) -> None:
    user = WebUser(app.test_client(), "gw_" + "A" * 43)
    r = user.sign_in()
    assert r.status_code == 401
    assert "the bearer token is not valid" in r.get_data(as_text=True)
    assert 'value="gw_' not in r.get_data(as_text=True)  # the token is not echoed back
    with rt.db.session() as session:
        assert session.scalars(select(WebSession)).first() is None
    assert user.get("/ui/artifacts").status_code == 302


def test_sign_in_without_its_form_token_is_refused(app: Flask, principals: Principals) -> None:
    client = app.test_client()
    client.get("/ui/sign-in")
    r = client.post("/ui/sign-in", data={"token": principals.tokens["lab"]})
    assert r.status_code == 400
    assert client.get("/ui/artifacts").status_code == 302  # not signed in


def test_unsigned_visitors_are_sent_to_sign_in_and_back(app: Flask) -> None:
    r = app.test_client().get("/ui/grants?cursor=x")
    assert r.status_code == 302
    assert r.headers["Location"] == "/ui/sign-in?next=/ui/grants?cursor%3Dx"


def test_sign_in_never_redirects_off_the_dashboard(app: Flask, principals: Principals) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/v1/me", "/ui\\..\\x"):
        client = app.test_client()
        page = client.get("/ui/sign-in")
        r = client.post(
            "/ui/sign-in",
            data={
                "token": principals.tokens["lab"],
                "next": target,
                "csrf_token": csrf_of(page.get_data(as_text=True)),
            },
        )
        assert r.headers["Location"] == "/ui/", target


def test_the_session_ends_after_idle_time_and_at_its_absolute_end(
    web: dict[str, WebUser], clock: FrozenClock, rt: Runtime, principals: Principals
) -> None:
    lab = web["lab"]
    idle = rt.config.web.idle_minutes
    for _ in range(3):  # each request moves the idle end on
        clock.advance(minutes=idle - 1)
        assert lab.get("/ui/artifacts").status_code == 200
    clock.advance(minutes=idle + 1)
    assert lab.get("/ui/artifacts").status_code == 302
    auditor = WebUser(lab.client.application.test_client(), principals.tokens["auditor"])
    assert auditor.sign_in().status_code == 303
    for _ in range(rt.config.web.absolute_hours * 60 // (idle - 1)):
        clock.advance(minutes=idle - 1)
        assert auditor.get("/ui/audit").status_code == 200
    clock.advance(minutes=idle - 1)
    assert auditor.get("/ui/audit").status_code == 302  # past the absolute end, however active


def test_sign_out_ends_the_session_on_the_server(
    app: Flask, web: dict[str, WebUser], principals: Principals
) -> None:
    lab = web["lab"]
    stolen = [c for c in lab.client._cookies.values() if c.key == "gw_session"][0].value
    r = lab.post("/ui/artifacts", "/ui/sign-out")
    assert r.status_code == 303
    assert lab.get("/ui/artifacts").status_code == 302
    replay = app.test_client()
    replay.set_cookie("gw_session", stolen, path="/ui")
    assert replay.get("/ui/artifacts").status_code == 302  # a copy of the cookie is dead too
    assert replay.post("/ui/sign-out").status_code == 401


def test_revoking_the_token_ends_its_sessions(web: dict[str, WebUser], rt: Runtime) -> None:
    with rt.db.session() as session:
        assert identity.revoke_tokens(session, org="lab-a", name="lab", now=rt.now()) == 1
    assert web["lab"].get("/ui/artifacts").status_code == 302
    assert web["auditor"].get("/ui/audit").status_code == 200


def test_a_session_never_does_more_than_its_token(web: dict[str, WebUser]) -> None:
    """A lab signed in is still a lab: the auditor's pages answer as the policy says."""
    r = web["lab_b"].get("/ui/reports/agencies/agency-a")
    assert r.status_code == 403
    assert "may not do audit.read_all" in r.get_data(as_text=True)
    assert web["eval"].get("/ui/audit").status_code == 403
    assert web["admin"].get("/ui/audit").status_code == 403


def test_the_dashboard_can_be_turned_off(rt: Runtime) -> None:
    app = _app(rt, **{"web.enabled": False})
    assert app.test_client().get("/ui/sign-in").status_code == 404
    assert app.test_client().get("/healthz").status_code == 200
