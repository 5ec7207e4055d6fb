"""No quotas on uploads let one lab fill the disk: per-org quotas and a free-space floor, 507."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from gateway.config import Config
from gateway.models import Upload
from gateway.runtime import Runtime
from gateway.services import quotas
from tests.api.conftest import Lab
from tests.conftest import MIB, Principals, make_config

OPEN = 3
IN_FLIGHT_GIB = 1


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path,
        **{
            "quotas.open_uploads_per_org": OPEN,
            "quotas.in_flight_gib_per_org": IN_FLIGHT_GIB,
            "quotas.min_free_mib": 0,
        },
    )


def insufficient(r: Any, quota: str) -> None:
    assert r.status_code == 507, r.get_json()
    body = r.get_json()
    assert r.mimetype == "application/problem+json"
    assert body["quota"] == quota and body["detail"]


def test_an_org_past_its_open_uploads_gets_507_and_others_are_unaffected(
    lab: Lab, principals: Principals
) -> None:
    made = [lab.create() for _ in range(OPEN)]
    r = lab.client.post(
        "/v1/uploads",
        json={"name": "one-more", "kind": "weights", "share_with": ["agency-a"]},
        headers=lab.auth,
    )
    insufficient(r, "open_uploads")
    other = lab.client.post(
        "/v1/uploads",
        json={"name": "b", "kind": "weights", "share_with": ["agency-a"]},
        headers=principals.auth("lab_b"),
    )
    assert other.status_code == 201
    assert lab.client.delete(f"/v1/uploads/{made[0]['id']}", headers=lab.auth).status_code == 204
    assert lab.create()["state"] == "open"


def test_declared_sizes_count_as_bytes_in_flight(lab: Lab) -> None:
    lab.create(size=(IN_FLIGHT_GIB << 30) - 10)
    r = lab.client.post(
        "/v1/uploads",
        json={"name": "x", "kind": "weights", "share_with": ["agency-a"], "size": 11},
        headers=lab.auth,
    )
    insufficient(r, "bytes_in_flight")


def test_a_declared_size_past_the_quota_on_its_own_is_413_not_a_wait(lab: Lab, rt: Runtime) -> None:
    """507 says "later"; an upload larger than the whole quota will never fit: 413, and no upload."""
    r = lab.client.post(
        "/v1/uploads",
        json={
            "name": "x",
            "kind": "weights",
            "share_with": ["agency-a"],
            "size": (IN_FLIGHT_GIB << 30) + 1,
        },
        headers=lab.auth,
    )
    assert r.status_code == 413 and r.mimetype == "application/problem+json", r.get_json()
    assert "can never be accepted" in r.get_json()["detail"]
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
    assert lab.create(size=IN_FLIGHT_GIB << 30)["state"] == "open"  # exactly the quota fits


def test_received_parts_count_when_no_size_was_declared(
    lab: Lab, client: FlaskClient, config: Config
) -> None:
    lab.create(size=(IN_FLIGHT_GIB << 30) - 8)
    upload = lab.create()
    assert lab.put(upload, 1, b"12345678").status_code == 200
    assert lab.put(upload, 1, b"87654321").status_code == 200  # replacing is not more
    insufficient(lab.put(upload, 2, b"9"), "bytes_in_flight")
    parts = client.get(f"/v1/uploads/{upload['id']}", headers=lab.auth).get_json()["parts"]
    assert [p["number"] for p in parts] == [1]


def test_below_the_free_space_floor_parts_and_uploads_get_507(
    lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = lab.create()
    free = 100 * MIB
    monkeypatch.setattr(quotas, "free_bytes", lambda path: free)
    rt.config = rt.config.replace(**{"quotas.min_free_mib": 99})
    assert lab.put(upload, 1, b"x" * 1024).status_code == 200
    insufficient(lab.put(upload, 2, b"x" * (MIB + 1)), "free_space")
    free = 10 * MIB
    insufficient(
        lab.client.post(
            "/v1/uploads",
            json={"name": "x", "kind": "weights", "share_with": ["agency-a"]},
            headers=lab.auth,
        ),
        "free_space",
    )


def test_the_floor_watches_the_store_and_the_sqlite_volumes(config: Config, rt: Runtime) -> None:
    found = quotas.volumes(rt)
    assert Path(config.storage.root) in found
    url = rt.config.database.url
    if url.startswith("sqlite:///"):  # a PostgreSQL server's volume is not the gateway's to watch
        assert Path(url.removeprefix("sqlite:///")).parent in found
    else:
        assert found == [Path(config.storage.root)]
    assert quotas.free_bytes(Path(config.storage.root) / "not" / "made") > 0
