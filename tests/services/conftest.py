"""Fixtures for access tests: an evaluator with an age identity, shared artifacts, grants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyrage
import pytest
from flask.testing import FlaskClient
from pyrage import x25519

from tests import helpers
from tests.api.conftest import Lab, lab  # noqa: F401 - the lab fixture, shared
from tests.conftest import Principals

PLAINTEXT_SIZE = 200_000


@dataclass
class Evaluator:
    client: FlaskClient
    principals: Principals
    who: str
    identity: Any

    @property
    def auth(self) -> dict[str, str]:
        return self.principals.auth(self.who)

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())

    def register(self, identity: Any | None = None) -> None:
        if identity is not None:
            self.identity = identity
        r = self.client.put(
            "/v1/me/recipient", json={"recipient": self.recipient}, headers=self.auth
        )
        assert r.status_code == 200, r.get_json()

    def ask(self, artifact: dict[str, Any], **body: Any) -> Any:
        return self.client.post(
            f"/v1/artifacts/{artifact['id']}/access-requests",
            json={"justification": "pre-deployment cyber evaluation", **body},
            headers=self.auth,
        )

    def request(self, artifact: dict[str, Any], **body: Any) -> dict[str, Any]:
        r = self.ask(artifact, **body)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def content(self, artifact: dict[str, Any], range_: str | None = None, **headers: str) -> Any:
        extra = {"Range": range_} if range_ else {}
        return self.client.get(
            f"/v1/artifacts/{artifact['id']}/content", headers={**self.auth, **extra, **headers}
        )

    def url(self, artifact: dict[str, Any]) -> Any:
        return self.client.post(f"/v1/artifacts/{artifact['id']}/download-url", headers=self.auth)

    def decrypt(self, data: bytes) -> bytes:
        return bytes(pyrage.decrypt(data, [self.identity]))


def evaluator_for(client: FlaskClient, principals: Principals, who: str) -> Evaluator:
    return Evaluator(client, principals, who, x25519.Identity.generate())


@pytest.fixture
def evaluator(client: FlaskClient, principals: Principals) -> Evaluator:
    """``eval`` of agency-a, with a registered recipient."""
    e = evaluator_for(client, principals, "eval")
    e.register()
    return e


@dataclass
class Shared:
    artifact: dict[str, Any]
    plaintext: bytes


@pytest.fixture
def shared(lab: Lab) -> Shared:  # noqa: F811 - the imported fixture
    """An artifact of lab-a shared with agency-a."""
    plaintext = helpers.random_bytes(PLAINTEXT_SIZE, seed=3)
    return Shared(lab.push(plaintext), plaintext)


def approve(lab: Lab, request_id: str, **body: Any) -> Any:  # noqa: F811
    return lab.client.post(f"/v1/access-requests/{request_id}/approve", json=body, headers=lab.auth)


@pytest.fixture
def granted(lab: Lab, evaluator: Evaluator, shared: Shared) -> dict[str, Any]:  # noqa: F811
    """An approved request of ``eval`` on ``shared``: the grant."""
    req = evaluator.request(shared.artifact)
    r = approve(lab, req["id"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def entries(client: FlaskClient, principals: Principals, **filters: str) -> list[dict[str, Any]]:
    """Audit entries (as the auditor sees them) matching ``filters``."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    r = client.get(f"/v1/audit/entries?limit=1000&{query}", headers=principals.auth("auditor"))
    assert r.status_code == 200, r.get_json()
    return [item["entry"] for item in r.get_json()["items"]]


def denials(client: FlaskClient, principals: Principals, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in entries(client, principals, action="auth.denied")
        if e["details"].get("reason") == reason
    ]
