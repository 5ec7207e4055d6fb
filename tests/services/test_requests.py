"""Requests and decisions: who may ask, who may decide, and how long a grant lasts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient

from gateway.clock import FrozenClock
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.services.conftest import Evaluator, Shared, approve, denials, entries, evaluator_for


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.removesuffix("Z"))


def test_evaluator_requests_and_both_sides_see_it(
    lab: Lab, evaluator: Evaluator, shared: Shared, principals: Principals
) -> None:
    req = evaluator.request(shared.artifact, duration_hours=24)
    assert (
        req["state"] == "pending"
        and req["artifact"] == shared.artifact["id"]
        and req["duration_hours"] == 24
    )
    for who in ("lab", "eval", "auditor"):
        items = lab.client.get("/v1/access-requests", headers=principals.auth(who)).get_json()[
            "items"
        ]
        assert [r["id"] for r in items] == [req["id"]], who
    for who in ("lab_b", "eval2", "eval_b"):
        assert (
            lab.client.get("/v1/access-requests", headers=principals.auth(who)).get_json()["items"]
            == []
        ), who
    shown = lab.client.get(
        f"/v1/access-requests/{req['id']}", headers=principals.auth("eval")
    ).get_json()
    assert shown["justification"] == "pre-deployment cyber evaluation"
    logged = entries(lab.client, principals, action="access.request")
    assert [(e["artifact"], e["details"]["request"]) for e in logged] == [
        (shared.artifact["id"], req["id"])
    ]


def test_foreign_agency_cannot_see_or_request(
    client: FlaskClient, principals: Principals, shared: Shared
) -> None:
    outsider = evaluator_for(client, principals, "eval_b")
    outsider.register()
    assert (
        client.get(f"/v1/artifacts/{shared.artifact['id']}", headers=outsider.auth).status_code
        == 404
    )
    assert client.get("/v1/artifacts", headers=outsider.auth).get_json()["items"] == []
    r = outsider.ask(shared.artifact)
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    hidden = [
        e
        for e in denials(client, principals, "hidden")
        if e["details"]["attempted"] == "access.request"
    ]
    assert len(hidden) == 1 and hidden[0]["org"] == "agency-b"


def test_only_evaluators_request(
    client: FlaskClient, principals: Principals, shared: Shared
) -> None:
    for who, role, status in (
        ("lab", "lab", 403),
        ("auditor", "auditor", 403),
        ("admin", "admin", 403),
        ("lab_b", "lab", 404),
    ):
        r = client.post(
            f"/v1/artifacts/{shared.artifact['id']}/access-requests",
            json={"justification": "x"},
            headers=principals.auth(who),
        )
        assert r.status_code == status, who
        assert entries(client, principals, action="auth.denied")[-1]["role"] == role
    assert len(entries(client, principals, action="auth.denied")) == 4
    assert (
        client.get("/v1/access-requests", headers=principals.auth("lab")).get_json()["items"] == []
    )


def test_request_for_missing_artifact_is_404(evaluator: Evaluator) -> None:
    assert evaluator.ask({"id": "art_missing"}).status_code == 404


def test_bad_request_bodies(evaluator: Evaluator, shared: Shared) -> None:
    for body in (
        {"justification": ""},
        {"justification": 5},
        {"duration_hours": 0},
        {"duration_hours": 721},
        {"duration_hours": "12"},
    ):
        r = evaluator.client.post(
            f"/v1/artifacts/{shared.artifact['id']}/access-requests",
            json={"justification": "why", **body},
            headers=evaluator.auth,
        )
        assert r.status_code == 400, body
    assert (
        evaluator.client.get("/v1/access-requests", headers=evaluator.auth).get_json()["items"]
        == []
    )


def test_a_second_pending_request_is_refused(
    evaluator: Evaluator, shared: Shared, principals: Principals
) -> None:
    first = evaluator.request(shared.artifact)
    r = evaluator.ask(shared.artifact)
    assert r.status_code == 409 and r.get_json()["request"] == first["id"]
    assert len(denials(evaluator.client, principals, "request already pending")) == 1


def test_approve_defaults_to_72_hours(
    lab: Lab, evaluator: Evaluator, shared: Shared, clock: FrozenClock, principals: Principals
) -> None:
    req = evaluator.request(shared.artifact)
    r = approve(lab, req["id"])
    assert r.status_code == 201
    grant = r.get_json()
    assert grant["state"] == "active" and grant["artifact"] == shared.artifact["id"]
    assert when(grant["not_before"]) == clock.now()
    assert when(grant["not_after"]) == clock.now() + timedelta(hours=72)
    assert "header" not in grant
    assert (
        lab.client.get(f"/v1/access-requests/{req['id']}", headers=lab.auth).get_json()["state"]
        == "approved"
    )
    logged = entries(lab.client, principals, action="access.approve")
    assert [e["grant"] for e in logged] == [grant["id"]]


def test_lab_may_shorten_but_not_lengthen(
    lab: Lab, evaluator: Evaluator, shared: Shared, clock: FrozenClock
) -> None:
    req = evaluator.request(shared.artifact, duration_hours=10)
    assert approve(lab, req["id"], duration_hours=11).status_code == 400
    grant = approve(lab, req["id"], duration_hours=2).get_json()
    assert when(grant["not_after"]) == clock.now() + timedelta(hours=2)


def test_grant_never_outlives_the_review_window(
    lab: Lab, evaluator: Evaluator, shared: Shared, clock: FrozenClock
) -> None:
    clock.advance(days=29, hours=23)
    req = evaluator.request(shared.artifact)
    grant = approve(lab, req["id"]).get_json()
    assert grant["not_after"] == shared.artifact["review_ends_at"]


def test_only_the_owning_lab_decides(
    client: FlaskClient, principals: Principals, evaluator: Evaluator, shared: Shared
) -> None:
    req = evaluator.request(shared.artifact)
    others = (("eval", 403), ("auditor", 403), ("admin", 403), ("lab_b", 404), ("eval_b", 404))
    for who, status in others:
        for verb in ("approve", "deny"):
            r = client.post(
                f"/v1/access-requests/{req['id']}/{verb}", json={}, headers=principals.auth(who)
            )
            assert r.status_code == status, (who, verb)
    assert (
        client.get(f"/v1/access-requests/{req['id']}", headers=principals.auth("lab")).get_json()[
            "state"
        ]
        == "pending"
    )
    # approve and deny are both access.decide: one entry per principal, the repeat counted
    assert len(entries(client, principals, action="auth.denied")) == len(others)


def test_deny_with_reason_then_no_approval(
    lab: Lab, evaluator: Evaluator, shared: Shared, principals: Principals
) -> None:
    req = evaluator.request(shared.artifact)
    r = lab.client.post(
        f"/v1/access-requests/{req['id']}/deny",
        json={"reason": "not this agency"},
        headers=lab.auth,
    )
    assert r.status_code == 200
    assert r.get_json()["state"] == "denied" and r.get_json()["reason"] == "not this agency"
    assert [
        e["details"]["reason"] for e in entries(lab.client, principals, action="access.deny")
    ] == ["not this agency"]
    r = approve(lab, req["id"])
    assert r.status_code == 409
    assert len(denials(lab.client, principals, "request denied")) == 1
    assert lab.client.get("/v1/grants", headers=lab.auth).get_json()["items"] == []


def test_grant_lists_are_scoped(client: FlaskClient, principals: Principals, granted: dict) -> None:
    for who in ("lab", "eval", "auditor", "admin"):
        items = client.get("/v1/grants", headers=principals.auth(who)).get_json()["items"]
        assert [g["id"] for g in items] == [granted["id"]], who
        assert all("header" not in g for g in items)
    for who in ("lab_b", "eval2", "eval_b"):
        assert client.get("/v1/grants", headers=principals.auth(who)).get_json()["items"] == [], who


def test_lists_page(client: FlaskClient, principals: Principals, lab: Lab, shared: Shared) -> None:
    for who in ("eval", "eval2"):
        e = evaluator_for(client, principals, who)
        e.request(shared.artifact)
    first = client.get("/v1/access-requests?limit=1", headers=lab.auth).get_json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = client.get(
        f"/v1/access-requests?limit=1&cursor={first['next_cursor']}", headers=lab.auth
    ).get_json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    assert first["items"][0]["id"] != second["items"][0]["id"]


@pytest.mark.parametrize("who", ["lab", "admin"])
def test_revocation_by_lab_or_admin(
    client: FlaskClient, principals: Principals, granted: dict, who: str
) -> None:
    r = client.delete(f"/v1/grants/{granted['id']}", headers=principals.auth(who))
    assert r.status_code == 204
    items = client.get("/v1/grants", headers=principals.auth("eval")).get_json()["items"]
    assert items[0]["state"] == "revoked"
    assert [e["grant"] for e in entries(client, principals, action="grant.revoke")] == [
        granted["id"]
    ]
    assert (
        client.delete(f"/v1/grants/{granted['id']}", headers=principals.auth(who)).status_code
        == 409
    )


def test_revocation_by_others_is_refused(
    client: FlaskClient, principals: Principals, granted: dict
) -> None:
    for who, status in (("eval", 403), ("auditor", 403), ("lab_b", 404), ("eval_b", 404)):
        assert (
            client.delete(f"/v1/grants/{granted['id']}", headers=principals.auth(who)).status_code
            == status
        ), who
    assert (
        client.get("/v1/grants", headers=principals.auth("lab")).get_json()["items"][0]["state"]
        == "active"
    )
    assert entries(client, principals, action="grant.revoke") == []


def test_grant_shows_expired_once_its_time_is_up(
    client: FlaskClient, principals: Principals, granted: dict, clock: FrozenClock
) -> None:
    clock.advance(hours=72)
    assert (
        client.get("/v1/grants", headers=principals.auth("eval")).get_json()["items"][0]["state"]
        == "expired"
    )
    assert (
        client.delete(f"/v1/grants/{granted['id']}", headers=principals.auth("lab")).status_code
        == 409
    )
