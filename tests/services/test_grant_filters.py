"""``GET /v1/grants?state=``: grants in the state they show, and a 400 for a state there is not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.clock import FrozenClock
from tests.api.conftest import Lab
from tests.services.conftest import Evaluator


def _listed(lab: Lab, query: str) -> Any:
    return lab.client.get(f"/v1/grants?{query}", headers=lab.auth)


def _ids(lab: Lab, state: str) -> list[str]:
    r = _listed(lab, f"state={state}")
    assert r.status_code == 200, r.get_json()
    return [g["id"] for g in r.get_json()["items"]]


def test_grants_are_listed_by_the_state_they_show(
    lab: Lab, evaluator: Evaluator, granted: dict[str, Any], clock: FrozenClock
) -> None:
    """Active, then expired once past its end (before the sweeper ends the row), then revoked never."""
    assert _ids(lab, "active") == [granted["id"]]
    assert _ids(lab, "expired") == [] and _ids(lab, "revoked") == []
    clock.advance(hours=granted_hours(granted) + 1)
    assert _ids(lab, "active") == []
    assert _ids(lab, "expired") == [granted["id"]]


def test_a_revoked_grant_is_listed_as_revoked_only(
    lab: Lab, evaluator: Evaluator, granted: dict[str, Any]
) -> None:
    r = lab.client.delete(f"/v1/grants/{granted['id']}", headers=lab.auth)
    assert r.status_code == 204
    assert _ids(lab, "revoked") == [granted["id"]]
    assert _ids(lab, "active") == [] and _ids(lab, "expired") == []


def test_an_unknown_grant_state_is_a_400_naming_the_states(
    lab: Lab, granted: dict[str, Any]
) -> None:
    r = _listed(lab, "state=pending")
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert "active, revoked, expired" in r.get_json()["detail"]


def granted_hours(grant: dict[str, Any]) -> int:
    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return int((at(grant["not_after"]) - at(grant["not_before"])).total_seconds() // 3600)
