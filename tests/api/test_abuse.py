"""Abuse has bounds: rate limits per principal and per address, denials collapsed, signed URLs
refused without an entry; every such refusal counted in ``/metrics``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway import events
from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.runtime import Runtime
from tests.api.conftest import Lab
from tests.conftest import Principals, make_config
from tests.services.conftest import (  # noqa: F401 - fixtures, shared
    Evaluator,
    Shared,
    entries,
    evaluator,
    granted,
    shared,
)

BUDGET = 5


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path,
        **{
            "limits.principal_reads": f"{BUDGET}/minute",
            "limits.address_writes": "20/minute",
            "limits.denial_interval_seconds": 60,
        },
    )


def metric(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    want = re.escape(name + ("{" + inner + "}" if labels else "")) + r" (\S+)"
    found = re.search(rf"^{want}$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def audit_size(client: FlaskClient, principals: Principals) -> int:
    """The log's size, read without counting against the auditor's read budget twice."""
    r = client.get("/v1/audit/checkpoint", headers=principals.auth("auditor"))
    assert r.status_code == 200, r.get_data()
    return int(r.get_data(as_text=True).split("\n")[1])


# --- rate limits ------------------------------------------------------------------------


def test_a_principal_past_its_read_budget_gets_429_with_retry_after_and_no_entry(
    client: FlaskClient, principals: Principals
) -> None:
    before = audit_size(client, principals)
    counted = metric(
        client, "gateway_rate_limited_requests_total", budget="reads", scope="principal"
    )
    for _ in range(BUDGET):
        assert client.get("/v1/me", headers=principals.auth("eval")).status_code == 200
    r = client.get("/v1/me", headers=principals.auth("eval"))
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "reads" in r.get_json()["detail"]
    assert (
        metric(client, "gateway_rate_limited_requests_total", budget="reads", scope="principal")
        == counted + 1
    )
    # another principal from the same address has its own budget
    assert client.get("/v1/me", headers=principals.auth("eval2")).status_code == 200
    assert audit_size(client, principals) == before


def test_a_labs_own_listings_do_not_starve_its_part_uploads(lab: Lab) -> None:
    upload = lab.create()
    for _ in range(BUDGET + 1):
        last = lab.client.get("/v1/artifacts", headers=lab.auth)
    assert last.status_code == 429
    assert lab.put(upload, 1, b"part bytes").status_code == 200


def test_an_address_past_its_budget_is_refused_before_authentication(
    client: FlaskClient,
) -> None:
    codes = [client.post("/v1/uploads", json={}).status_code for _ in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429


# --- denials collapse -------------------------------------------------------------------


def _denials(client: FlaskClient, principals: Principals) -> list[dict[str, Any]]:
    return entries(client, principals, action="auth.denied")


def test_repeated_denials_collapse_into_one_entry_and_a_count_when_the_interval_closes(
    client: FlaskClient, principals: Principals, clock: FrozenClock, config: Config
) -> None:
    eve = principals.auth("eval")
    first_time = clock.now()
    for n in range(BUDGET):
        clock.advance(seconds=1)
        assert (
            client.post(f"/v1/artifacts/art_nope{n}/access-requests", headers=eve).status_code
            == 404
        )
    logged = _denials(client, principals)
    assert len(logged) == 1 and "count" not in logged[0]["details"]
    assert metric(client, "gateway_denials_collapsed_total") >= BUDGET - 1
    clock.advance(seconds=config.limits.denial_interval_seconds)
    assert client.post("/v1/artifacts/art_again/access-requests", headers=eve).status_code == 404
    first, summary, fresh = _denials(client, principals)
    assert summary["details"]["count"] == BUDGET - 1
    assert summary["details"]["first"] > first["time"] >= first_time.isoformat()[:19]
    assert summary["details"]["last"] < fresh["time"]
    assert summary["actor"] == first["actor"] and summary["outcome"] == "denied"
    assert "count" not in fresh["details"]


def test_the_sweeper_records_a_closed_intervals_repeats_once(
    client: FlaskClient, principals: Principals, clock: FrozenClock, rt: Runtime
) -> None:
    for who in ("eval", "eval", "eval", "eval_b"):
        client.post("/v1/artifacts/art_nope/access-requests", headers=principals.auth(who))
    assert len(_denials(client, principals)) == 2  # one per principal
    assert events.close_denials(rt, rt.now()) == 0  # the interval is still open
    clock.advance(seconds=61)
    assert events.close_denials(rt, rt.now()) == 1  # eval's two repeats; eval_b had none
    assert events.close_denials(rt, rt.now()) == 0
    counted = [e for e in _denials(client, principals) if "count" in e["details"]]
    assert [e["details"]["count"] for e in counted] == [2]


# --- signed URLs ------------------------------------------------------------------------


def test_refusals_of_expired_or_revoked_signed_urls_are_counted_not_logged(
    lab: Lab,
    evaluator: Evaluator,  # noqa: F811 - the imported fixtures
    granted: dict[str, Any],  # noqa: F811 - the imported fixtures
    shared: Shared,  # noqa: F811 - the imported fixtures
    clock: FrozenClock,
    principals: Principals,
) -> None:
    client = evaluator.client
    url = evaluator.url(shared.artifact).get_json()["url"]
    path = url[url.index("/download/") :]
    assert client.get(path).status_code == 200
    clock.advance(seconds=901)
    before = audit_size(client, principals)
    expired = metric(client, "gateway_signed_url_refusals_total", reason="url expired")
    for _ in range(3):
        assert client.get(path).status_code == 403
    assert metric(client, "gateway_signed_url_refusals_total", reason="url expired") == expired + 3
    assert audit_size(client, principals) == before
    fresh = evaluator.url(shared.artifact).get_json()["url"]
    fresh_path = fresh[fresh.index("/download/") :]
    assert client.delete(f"/v1/grants/{granted['id']}", headers=lab.auth).status_code == 204
    before = audit_size(client, principals)
    revoked = metric(client, "gateway_signed_url_refusals_total", reason="grant revoked")
    for _ in range(3):
        assert client.get(fresh_path).status_code == 403
    # the counters belong to the process, which other tests share: count what this one added
    assert (
        metric(client, "gateway_signed_url_refusals_total", reason="grant revoked") == revoked + 3
    )
    assert audit_size(client, principals) == before
    forged = metric(client, "gateway_signed_url_refusals_total", reason="bad signature")
    bad = client.get(fresh_path[:-2] + "AA")
    assert bad.status_code == 403
    assert metric(client, "gateway_signed_url_refusals_total", reason="bad signature") == forged + 1
    assert audit_size(client, principals) == before
