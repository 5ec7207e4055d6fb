"""Health, readiness, errors as problem+json, request ids, OpenAPI."""

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Principals


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["checks"] == {
        "metadata": "ok",
        "audit_log": "ok",
        "object_store": "ok",
        "keys": "ok",
        "custody": "ok",
    }


def test_readyz_is_503_when_the_object_store_is_not_writable(client: FlaskClient, config) -> None:
    import os
    import shutil
    from pathlib import Path

    root = Path(config.storage.root)
    shutil.rmtree(root)
    root.write_text("not a directory")
    try:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.get_json()["checks"]["object_store"] == "unavailable"
    finally:
        os.unlink(root)


def test_readyz_is_503_when_the_custody_backend_is_not_usable(client: FlaskClient, config) -> None:
    import shutil
    from pathlib import Path

    key_dir = config.custody.key_dir(Path(config.keys.dir))
    if key_dir.exists():
        shutil.rmtree(key_dir)
    key_dir.write_text("not a directory")
    try:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.get_json()["checks"]["custody"] == "unavailable"
    finally:
        key_dir.unlink()


def test_every_error_is_problem_json_with_a_request_id(
    client: FlaskClient, principals: Principals
) -> None:
    for r in (
        client.get("/nowhere"),
        client.delete("/healthz"),
        client.get("/v1/me"),
        client.post(
            "/v1/uploads",
            data="{not json",
            headers={**principals.auth("lab"), "Content-Type": "application/json"},
        ),
        client.post("/v1/uploads", json=[1, 2], headers=principals.auth("lab")),
    ):
        assert r.mimetype == "application/problem+json", r.data
        body = r.get_json()
        assert set(body) >= {"type", "title", "status", "detail"}
        assert body["status"] == r.status_code
        assert "Traceback" not in r.get_data(as_text=True)
        assert r.headers["X-Request-Id"]
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/healthz").status_code == 405


def test_a_client_chosen_request_id_is_kept_apart_and_never_becomes_the_gateways(
    client: FlaskClient, principals: Principals
) -> None:
    """Two principals sending one X-Request-Id get entries with different request ids."""
    sent = {**principals.auth("eval"), "X-Request-Id": "abc-123"}
    r = client.get("/v1/artifacts/art_nowhere", headers=sent)
    assert r.status_code == 404
    assert re.fullmatch(r"req_[0-9a-f]{24}", r.headers["X-Request-Id"])
    assert r.headers["X-Client-Request-Id"] == "abc-123"
    r2 = client.get(
        "/v1/artifacts/art_elsewhere",
        headers={**principals.auth("eval_b"), "X-Request-Id": "abc-123"},
    )
    entries = client.get(
        "/v1/audit/entries?action=auth.denied", headers=principals.auth("auditor")
    ).get_json()["items"]
    logged = {e["entry"]["request_id"]: e["entry"]["details"] for e in entries}
    assert set(logged) == {r.headers["X-Request-Id"], r2.headers["X-Request-Id"]}
    assert all(d["client_request_id"] == "abc-123" for d in logged.values())
    bad = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert bad.headers["X-Request-Id"].startswith("req_")
    assert "X-Client-Request-Id" not in bad.headers


def test_missing_wrong_expired_or_revoked_token_is_401(
    client: FlaskClient, principals: Principals, rt, clock
) -> None:
    assert client.get("/v1/me").status_code == 401
    assert client.get("/v1/me", headers={"Authorization": "Bearer gw_nope"}).status_code == 401
    assert client.get("/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/v1/me", headers=principals.auth("lab")).status_code == 200
    from gateway.services import identity

    with rt.db.session() as session:
        identity.revoke_tokens(session, org="lab-a", name="lab", now=rt.now())
    r = client.get("/v1/me", headers=principals.auth("lab"))
    assert r.status_code == 401 and "revoked" in r.get_json()["detail"]
    clock.advance(days=31)
    r = client.get("/v1/me", headers=principals.auth("eval"))
    assert r.status_code == 401 and "expired" in r.get_json()["detail"]


def test_me(client: FlaskClient, principals: Principals) -> None:
    body = client.get("/v1/me", headers=principals.auth("eval")).get_json()
    assert body == {
        "name": "eval",
        "org": "agency-a",
        "role": "evaluator",
        "recipient": None,
        "signing_key": None,
    }


def metric(client: FlaskClient, name: str) -> float:
    """The value of a label-less counter in ``/metrics`` (0 when it is not there)."""
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_anonymous_401s(client: FlaskClient, principals: Principals) -> None:
    name = "gateway_unauthenticated_requests_total"
    before = metric(client, name)
    assert client.get("/v1/me").status_code == 401
    assert client.get("/v1/me", headers={"Authorization": "Bearer gw_nope"}).status_code == 401
    assert metric(client, name) == before + 2
    assert client.get("/v1/me", headers=principals.auth("lab")).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert metric(client, name) == before + 2  # answered requests are not counted


def _served(app: Flask) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, its path parameters written as OpenAPI writes them."""
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {
            (method, path) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")
        }
    return routes


def test_the_openapi_document_is_valid_and_describes_exactly_the_routes(
    client: FlaskClient, app: Flask
) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = _served(app)
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "OpenAPI entries for routes that do not exist"
    for path in ("/v1/uploads/{upload_id}/parts/{number}", "/v1/artifacts/{artifact_id}/content"):
        assert path in doc["paths"]
