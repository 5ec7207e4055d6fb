"""Withdrawal and expiry: grants end, the custody key is shredded, objects are deleted, all logged.

What happens when the store cannot delete is in ``test_shredding.py``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from flask.testing import FlaskClient

from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.errors import Gone
from gateway.models import AccessRequest, Artifact, CustodyKey, Grant, Upload
from gateway.runtime import Runtime
from gateway.services import custody_keys
from gateway.sweeper import sweep_once
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals, make_config
from tests.services.conftest import Evaluator, Shared, approve, denials, entries

WINDOW_DAYS = 10


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A review window shorter than the seeded tokens' 30 days, so its end can be reached."""
    return make_config(tmp_path, **{"access.review_window_days": WINDOW_DAYS})


def object_key(rt: Runtime, shared: Shared) -> str:
    return helpers.object_key(rt, shared.artifact["id"])


def assert_shredded(rt: Runtime, shared: Shared, state: str) -> None:
    aid = shared.artifact["id"]
    with rt.db.session() as session:
        artifact = session.get(Artifact, aid)
        assert artifact.state == state and artifact.ended_at is not None
        assert session.get(CustodyKey, artifact.upload_id) is None
        assert session.get(Upload, artifact.upload_id).header_prefix is None
        grants = session.query(Grant).filter(Grant.artifact_id == aid).all()
        assert grants and all(g.state != "active" and g.header is None for g in grants)
        with pytest.raises(Gone):
            custody_keys.custody_identity(rt, session, artifact.upload_id)
    key_dir = rt.config.custody.key_dir(rt.keys_dir)  # the local backend's key file is gone
    assert not list(key_dir.glob(f"{artifact.upload_id}.*"))
    assert not rt.store.exists(object_key(rt, shared))


def no_route_releases(client: FlaskClient, evaluator: Evaluator, shared: Shared) -> None:
    aid = shared.artifact["id"]
    assert evaluator.content(shared.artifact).status_code == 410
    assert evaluator.url(shared.artifact).status_code == 410
    assert evaluator.ask(shared.artifact).status_code == 410
    shown = client.get(f"/v1/artifacts/{aid}", headers=evaluator.auth).get_json()  # metadata stays
    assert shown["manifest"] == shared.artifact["manifest"]


def test_lab_withdraws(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    rt: Runtime,
) -> None:
    evaluator.content(shared.artifact)  # the key was released once
    issued = evaluator.url(shared.artifact).get_json()
    pending = client.post(
        f"/v1/artifacts/{shared.artifact['id']}/access-requests",
        json={"justification": "x"},
        headers=principals.auth("eval2"),
    ).get_json()
    assert rt.store.exists(object_key(rt, shared))
    assert (
        client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth).status_code == 204
    )
    assert_shredded(rt, shared, "withdrawn")
    no_route_releases(client, evaluator, shared)
    u = urlparse(issued["url"])
    assert client.get(f"{u.path}?{u.query}").status_code == 410  # an issued URL too
    with rt.db.session() as session:
        assert session.get(AccessRequest, pending["id"]).state == "cancelled"
    withdrawn = entries(client, principals, action="artifact.withdraw")
    assert len(withdrawn) == 1 and withdrawn[0]["details"]["key_shredded"] is True
    assert withdrawn[0]["details"]["objects_to_delete"] == [object_key(rt, shared)]
    deleted = entries(client, principals, action="object.delete")
    assert [e["details"]["key"] for e in deleted] == [object_key(rt, shared)]
    assert deleted[0]["index"] > withdrawn[0]["index"]
    assert [e["grant"] for e in entries(client, principals, action="grant.revoke")] == [
        granted["id"]
    ]
    # The history stays: the release and the download before the withdrawal are still there.
    assert len(entries(client, principals, action="key.release")) == 1
    assert (
        client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth).status_code == 410
    )


def test_only_the_owning_lab_withdraws(
    client: FlaskClient, principals: Principals, shared: Shared, rt: Runtime
) -> None:
    others = (("eval", 403), ("auditor", 403), ("admin", 403), ("lab_b", 404), ("eval_b", 404))
    for who, status in others:
        r = client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=principals.auth(who))
        assert r.status_code == status, who
    assert rt.store.exists(object_key(rt, shared))
    assert (
        client.get(
            f"/v1/artifacts/{shared.artifact['id']}", headers=principals.auth("lab")
        ).get_json()["state"]
        == "available"
    )
    assert len(entries(client, principals, action="auth.denied")) == len(others)


def test_review_window_ends(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    rt: Runtime,
    clock: FrozenClock,
) -> None:
    req = evaluator.request(shared.artifact, duration_hours=24 * WINDOW_DAYS)
    assert approve(lab, req["id"]).status_code == 201
    assert evaluator.content(shared.artifact).status_code == 200
    clock.advance(days=WINDOW_DAYS - 1)
    assert sweep_once(rt)["artifacts_expired"] == 0
    clock.advance(days=1)
    report = sweep_once(rt)
    assert report["artifacts_expired"] == 1 and report["grants_expired"] == 0
    assert_shredded(rt, shared, "expired")
    no_route_releases(client, evaluator, shared)
    assert len(denials(client, principals, "artifact expired")) == 2  # content+URL collapse
    expired = entries(client, principals, action="artifact.expire")
    assert len(expired) == 1 and expired[0]["details"]["objects_to_delete"] == [
        object_key(rt, shared)
    ]
    deleted = entries(client, principals, action="object.delete")
    assert [(e["details"]["key"], e["details"]["reason"]) for e in deleted] == [
        (object_key(rt, shared), "expired")
    ]
    assert [e["details"]["cause"] for e in entries(client, principals, action="grant.expire")] == [
        "artifact expired"
    ]
    assert sweep_once(rt)["artifacts_expired"] == 0  # idempotent
    assert (
        client.get(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth).get_json()["state"]
        == "expired"
    )


def test_sweeper_expires_grants(
    client: FlaskClient,
    principals: Principals,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    rt: Runtime,
    clock: FrozenClock,
) -> None:
    assert evaluator.content(shared.artifact).status_code == 200
    clock.advance(hours=71, minutes=59)
    assert sweep_once(rt)["grants_expired"] == 0
    clock.advance(minutes=1)
    assert sweep_once(rt)["grants_expired"] == 1
    with rt.db.session() as session:
        grant = session.get(Grant, granted["id"])
        assert grant.state == "expired" and grant.header is None
    assert [e["grant"] for e in entries(client, principals, action="grant.expire")] == [
        granted["id"]
    ]
    assert evaluator.content(shared.artifact).status_code == 403
    assert sweep_once(rt)["grants_expired"] == 0
    assert rt.store.exists(object_key(rt, shared))  # the artifact itself lives on
