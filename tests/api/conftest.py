"""Fixtures for API tests: a lab with a registered signing key, an upload helper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from nacl.signing import SigningKey

from tests import helpers
from tests.conftest import Principals


@dataclass
class Lab:
    client: FlaskClient
    principals: Principals
    key: SigningKey

    @property
    def auth(self) -> dict[str, str]:
        return self.principals.auth("lab")

    def create(self, **body: Any) -> dict[str, Any]:
        payload = {"name": "model-x", "kind": "weights", "share_with": ["agency-a"], **body}
        r = self.client.post("/v1/uploads", json=payload, headers=self.auth)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def put(
        self, upload: dict[str, Any], number: int, data: bytes, digest: str | None = None
    ) -> Any:
        headers = {**self.auth, "X-Content-SHA256": digest or helpers.sha(data)}
        return self.client.put(
            f"/v1/uploads/{upload['id']}/parts/{number}", data=data, headers=headers
        )

    def put_all(self, upload: dict[str, Any], data: bytes) -> None:
        for i, part in enumerate(helpers.split(data, upload["part_size"]), start=1):
            r = self.put(upload, i, part)
            assert r.status_code == 200, r.get_json()

    def complete(
        self, upload: dict[str, Any], data: bytes, plaintext: bytes, /, **changes: Any
    ) -> Any:
        m = helpers.manifest(upload, data, plaintext)
        m.update(changes)
        return self.client.post(
            f"/v1/uploads/{upload['id']}/complete",
            json={"manifest": m, "signature": helpers.sign(m, self.key)},
            headers=self.auth,
        )

    def push(self, plaintext: bytes, **body: Any) -> dict[str, Any]:
        """A whole upload, completed; returns the artifact."""
        upload = self.create(**body)
        data = helpers.age_file(upload["recipient"], plaintext)
        self.put_all(upload, data)
        r = self.complete(upload, data, plaintext)
        assert r.status_code == 201, r.get_json()
        return r.get_json()


@pytest.fixture
def lab(client: FlaskClient, principals: Principals) -> Lab:
    key = SigningKey.generate()
    r = client.put(
        "/v1/me/signing-key",
        json=helpers.key_registration(key, {"org": "lab-a", "name": "lab"}),
        headers=principals.auth("lab"),
    )
    assert r.status_code == 200, r.get_json()
    return Lab(client, principals, key)
