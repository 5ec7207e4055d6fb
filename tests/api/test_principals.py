"""Principal lookups: names for ids, each role seeing only the principals it already meets."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.api.conftest import Lab
from tests.conftest import Principals


def _id(client: FlaskClient, principals: Principals, who: str) -> str:
    r = client.get("/v1/principals/me", headers=principals.auth(who))
    assert r.status_code == 200, r.get_json()
    return str(r.get_json()["id"])


def _lookup(client: FlaskClient, principals: Principals, who: str, *ids: str) -> set[str]:
    r = client.get(
        "/v1/principals", query_string=[("id", i) for i in ids], headers=principals.auth(who)
    )
    assert r.status_code == 200, r.get_json()
    return {p["name"] for p in r.get_json()["items"]}


@pytest.fixture
def world(lab: Lab, client: FlaskClient, principals: Principals) -> dict[str, Any]:
    """eval asked for access to lab-a's artifact and got it; eval2 and eval_b did nothing."""
    artifact = lab.push(b"w")
    made = client.post(
        f"/v1/artifacts/{artifact['id']}/access-requests",
        json={"justification": "why"},
        headers=principals.auth("eval"),
    ).get_json()
    r = client.post(f"/v1/access-requests/{made['id']}/approve", json={}, headers=lab.auth)
    assert r.status_code == 201, r.get_json()
    names = ("lab", "lab_b", "eval", "eval2", "eval_b", "auditor", "admin")
    return {who: _id(client, principals, who) for who in names}


def test_me_names_the_caller(client: FlaskClient, principals: Principals) -> None:
    r = client.get("/v1/principals/me", headers=principals.auth("eval"))
    assert r.get_json() | {"id": "-"} == {
        "id": "-",
        "name": "eval",
        "org": "agency-a",
        "role": "evaluator",
    }
    assert r.get_json()["id"].startswith("prn_")


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("lab", {"lab", "eval"}),  # its own org, and who asked for its artifacts
        ("lab_b", {"lab-b"}),  # nobody asked for lab-b's artifacts
        ("eval", {"eval", "lab"}),  # itself and the lab principal who decided its request
        ("eval2", {"eval2"}),  # not its agency colleague
        ("eval_b", {"eval-b"}),
        ("auditor", {"lab", "lab-b", "eval", "eval2", "eval-b", "auditor", "admin"}),
        ("admin", {"lab", "lab-b", "eval", "eval2", "eval-b", "auditor", "admin"}),
    ],
)
def test_each_role_names_only_the_principals_it_meets(
    client: FlaskClient, principals: Principals, world: dict[str, str], who: str, sees: set[str]
) -> None:
    assert _lookup(client, principals, who, *world.values()) == sees


def test_a_hidden_principal_is_a_recorded_404(
    client: FlaskClient, principals: Principals, world: dict[str, str], rt: Any
) -> None:
    from gateway.audit import store
    from gateway.services.denials import DenialCount

    with rt.db.session() as session:
        before = store.size(session)
    r = client.get(f"/v1/principals/{world['eval2']}", headers=principals.auth("eval"))
    assert r.status_code == 404 and r.content_type == "application/problem+json"
    missing = client.get("/v1/principals/prn_nobody", headers=principals.auth("eval"))
    assert missing.status_code == 404
    assert missing.get_json()["detail"].endswith("was not found")
    with rt.db.session() as session:
        # the first refusal is an entry; the repeat (same actor, action and reason) is
        # counted in its interval's row, to become one entry when the interval closes
        assert store.size(session) == before + 1, "the first refusal is an auth.denied entry"
        rows = session.scalars(select(DenialCount).where(DenialCount.actor == world["eval"]))
        assert [(row.action, row.count) for row in rows] == [("principal.read", 1)]


@pytest.mark.parametrize(
    "query", [[], [("id", "x")] * 101, [("id", "prn_ok"), ("id", "bad id")], [("id", "")]]
)
def test_bad_lookups_are_400s(
    client: FlaskClient, principals: Principals, query: list[tuple[str, str]]
) -> None:
    r = client.get("/v1/principals", query_string=query, headers=principals.auth("auditor"))
    assert r.status_code == 400 and r.content_type == "application/problem+json"
