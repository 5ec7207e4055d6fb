"""Fixtures for the dashboard's tests: signed-in browsers (Flask's test client) per role."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from nacl.signing import SigningKey
from werkzeug.test import TestResponse

from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


@dataclass
class WebUser:
    """One browser: its own cookies, signed in with one principal's token."""

    client: FlaskClient
    token: str

    def sign_in(self) -> TestResponse:
        page = self.client.get("/ui/sign-in")
        return self.client.post(
            "/ui/sign-in",
            data={"token": self.token, "csrf_token": csrf_of(page.get_data(as_text=True))},
        )

    def get(self, path: str, **kw: Any) -> TestResponse:
        return self.client.get(path, **kw)

    def text(self, path: str) -> str:
        r = self.client.get(path)
        assert r.status_code == 200, (r.status_code, r.get_data(as_text=True)[:2000])
        return r.get_data(as_text=True)

    def post(self, page: str, action: str, **data: Any) -> TestResponse:
        """Submit a form of ``page`` to ``action``, with the CSRF token the page carries."""
        token = csrf_of(self.text(page))
        return self.client.post(action, data={"csrf_token": token, **data})


@pytest.fixture
def web(app: Flask, principals: Principals) -> dict[str, WebUser]:
    users = {}
    for who in ("lab", "lab_b", "eval", "eval_b", "auditor", "admin"):
        user = WebUser(app.test_client(), principals.tokens[who])
        assert user.sign_in().status_code == 303
        users[who] = user
    return users


@pytest.fixture
def lab(client: FlaskClient, principals: Principals) -> Lab:
    key = SigningKey.generate()
    r = client.put(
        "/v1/me/signing-key",
        json={"public_key": helpers.public_b64(key)},
        headers=principals.auth("lab"),
    )
    assert r.status_code == 200, r.get_json()
    return Lab(client, principals, key)


@dataclass
class Story:
    """A month's worth of one artifact: requests, a denial, a grant, a release, downloads."""

    artifact: dict[str, Any]
    granted: str
    denied: str


@pytest.fixture
def story(lab: Lab, client: FlaskClient, principals: Principals) -> Story:
    from gateway.age import X25519Identity

    artifact = lab.push(
        b"weights " * 1000, name="frontier-model", share_with=["agency-a", "agency-b"]
    )
    art = artifact["id"]
    ev = principals.auth("eval")
    identity = X25519Identity.generate()
    assert (
        client.put(
            "/v1/me/recipient", json={"recipient": str(identity.to_recipient())}, headers=ev
        ).status_code
        < 300
    )
    asked = client.post(
        f"/v1/artifacts/{art}/access-requests", json={"justification": "cyber eval"}, headers=ev
    ).get_json()
    other = client.post(
        f"/v1/artifacts/{art}/access-requests",
        json={"justification": "<script>alert(1)</script>"},
        headers=principals.auth("eval_b"),
    ).get_json()
    lab_auth = principals.auth("lab")
    assert (
        client.post(f"/v1/access-requests/{asked['id']}/approve", headers=lab_auth).status_code
        == 201
    )
    assert (
        client.post(
            f"/v1/access-requests/{other['id']}/deny", json={"reason": "no"}, headers=lab_auth
        ).status_code
        < 300
    )
    assert client.get(f"/v1/artifacts/{art}/content", headers=ev).status_code == 200
    r = client.get(f"/v1/artifacts/{art}/content", headers={**ev, "Range": "bytes=0-99"})
    assert r.status_code == 206
    refused = client.get(f"/v1/artifacts/{art}/content", headers=principals.auth("eval_b"))
    assert refused.status_code == 403
    return Story(artifact, asked["id"], other["id"])
