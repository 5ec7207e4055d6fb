"""Fuzzing the served OpenAPI document: every operation, one token per role, no 5xx.

Schemathesis generates each operation's requests from ``/v1/openapi.json`` (path and
query parameters, headers, bodies; half of the path ids are ones that exist, so the
cases reach past the lookups), and they go through the WSGI app with the token of each
role in turn. Every answer must be below 500, every error must be problem+json whose
``status`` is the answer's, and every status must be one the document lists for the
operation. The number of examples per operation and role is bounded
(``GATEWAY_FUZZ_EXAMPLES``, default 12), so the whole run takes about a minute here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import bootstrap
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.services import identity
from tests import helpers
from tests.conftest import SEED, make_config

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "12"))
ROLES = ("lab", "eval", "auditor", "admin")
ANYTHING = ("401", "429")  # documented for every /v1 route


class Target:
    """A seeded gateway: tokens by role, and ids that exist, by path parameter."""

    def __init__(self, root: Path) -> None:
        config = make_config(
            root,
            **{
                f"limits.{scope}_{kind}": "1000000/minute"
                for scope in ("principal", "address")
                for kind in ("reads", "writes", "parts", "content")
            },
        )
        list(bootstrap.init(config))
        self.rt = Runtime(config)
        self.app: Flask = create_app(config, runtime=self.rt)
        self.tokens = self._seed()
        self.ids = self._objects()

    def _seed(self) -> dict[str, str]:
        tokens = {}
        with self.rt.db.session() as session:
            for short, org, kind, role in SEED:
                identity.ensure_org(session, org, kind, self.rt.now())
                tokens[short], _ = identity.create_token(
                    session,
                    org=org,
                    role=role,
                    name=short.replace("_", "-"),
                    ttl_days=30,
                    now=self.rt.now(),
                )
        return tokens

    def call(self, method: str, path: str, who: str, **kw: Any) -> Any:
        client = self.app.test_client()
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kw.pop("headers", {})}
        return client.open(path, method=method, headers=headers, **kw)

    def _objects(self) -> dict[str, list[str]]:
        from nacl.signing import SigningKey

        key = SigningKey.generate()
        me = self.call("GET", "/v1/me", "lab").get_json()
        self.call("PUT", "/v1/me/signing-key", "lab", json=helpers.key_registration(key, me))
        body = {"name": "fuzzed", "kind": "weights", "share_with": ["agency-a"]}
        upload = self.call("POST", "/v1/uploads", "lab", json=body).get_json()
        data = helpers.age_file(upload["recipient"], b"weights" * 100)
        self.call(
            "PUT",
            f"/v1/uploads/{upload['id']}/parts/1",
            "lab",
            data=data,
            headers={"X-Content-SHA256": helpers.sha(data)},
        )
        m = helpers.manifest(upload, data, b"weights" * 100)
        art = self.call(
            "POST",
            f"/v1/uploads/{upload['id']}/complete",
            "lab",
            json={"manifest": m, "signature": helpers.sign(m, key)},
        ).get_json()
        open_upload = self.call("POST", "/v1/uploads", "lab", json=body).get_json()
        from pyrage import x25519

        recipient = str(x25519.Identity.generate().to_public())
        self.call("PUT", "/v1/me/recipient", "eval", json={"recipient": recipient})
        req = self.call(
            "POST",
            f"/v1/artifacts/{art['id']}/access-requests",
            "eval",
            json={"justification": "fuzz"},
        ).get_json()
        other = self.call(
            "POST",
            f"/v1/artifacts/{art['id']}/access-requests",
            "eval2",
            json={"justification": "fuzz"},
        ).get_json()
        grant = self.call("POST", f"/v1/access-requests/{req['id']}/approve", "lab", json={})
        return {
            "upload_id": [open_upload["id"], upload["id"]],
            "artifact_id": [art["id"]],
            "request_id": [req["id"], other["id"]],
            "grant_id": [grant.get_json()["id"]],
            "org": ["lab-a", "agency-a"],
            "number": ["1", "2"],
        }


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"))
    yield t
    t.rt.close()


def operations(target: Target) -> list[Any]:
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", target.app)
    return [result.ok() for result in schema.get_all_operations()]


def check(operation: Any, case: Any, response: Any) -> None:
    """No 5xx; errors are problem+json naming their status; statuses the document lists."""
    where = f"{case.method} {case.formatted_path} {case.query or ''} -> {response.status_code}"
    assert response.status_code < 500, where + " " + response.text[:300]
    documented = set(operation.definition.raw["responses"]) | set(ANYTHING)
    if case.formatted_path.startswith("/v1/"):
        assert str(response.status_code) in documented, where
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), where
        body = json.loads(response.text)
        assert body["status"] == response.status_code and body["detail"], where
        assert {"type", "title"} <= set(body), where


def fuzz(target: Target, operation: Any, auth: dict[str, str]) -> None:
    """Bounded examples of one operation, each checked."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), real=st.booleans(), pick=st.integers(0, 1))
    def run(case: Any, real: bool, pick: int) -> None:
        if real and case.path_parameters:
            for name in case.path_parameters:
                pool = target.ids.get(name, ["x"])
                case.path_parameters[name] = pool[pick % len(pool)]
        check(operation, case, case.call(headers=auth))

    run()


@pytest.mark.parametrize("who", ROLES)
def test_no_generated_request_gets_a_5xx_or_an_error_that_is_not_problem_json(
    target: Target, who: str
) -> None:
    auth = {"Authorization": f"Bearer {target.tokens[who]}"}
    for operation in operations(target):
        fuzz(target, operation, auth)
