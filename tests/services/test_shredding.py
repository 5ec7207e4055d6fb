"""Withdrawal and expiry never fail open: the shred commits first, the store's deletion after.

A store that cannot delete (an outage, throttling, a permissions change) cannot be caused
on the local backend, so its ``delete`` is made to fail here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.models import Artifact, CustodyKey, Grant, PendingDeletion
from gateway.runtime import Runtime
from gateway.storage import StorageError
from gateway.sweeper import sweep_once
from tests import helpers
from tests.conftest import Principals, make_config
from tests.services.conftest import Evaluator, Shared, entries

WINDOW_DAYS = 10


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, **{"access.review_window_days": WINDOW_DAYS})


def store_down(rt: Runtime, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def delete(key: str) -> bool:
        raise error

    monkeypatch.setattr(rt.store, "delete", delete)


def queue(rt: Runtime) -> list[PendingDeletion]:
    with rt.db.session() as session:
        return list(session.scalars(select(PendingDeletion)))


def assert_shredded_but_stored(rt: Runtime, shared: Shared, state: str) -> str:
    aid = shared.artifact["id"]
    key = helpers.object_key(rt, aid)
    with rt.db.session() as session:
        artifact = session.get(Artifact, aid)
        assert artifact is not None and artifact.state == state
        assert session.get(CustodyKey, artifact.upload_id) is None
        grants = session.scalars(select(Grant).where(Grant.artifact_id == aid)).all()
        assert all(g.state != "active" and g.header is None for g in grants)
    assert rt.store.exists(key)  # the ciphertext is still there, but nothing opens it
    return key


@pytest.mark.parametrize(
    "error", [StorageError("S3: 503 SlowDown"), PermissionError(13, "Permission denied")]
)
def test_a_store_outage_during_withdrawal_shreds_and_says_deletion_is_pending(
    client: FlaskClient,
    principals: Principals,
    lab: Any,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    assert evaluator.content(shared.artifact).status_code == 200
    store_down(rt, monkeypatch, error)
    r = client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
    assert r.status_code == 202, r.get_json()
    assert r.get_json() == {
        "artifact": shared.artifact["id"],
        "state": "withdrawn",
        "deletion": "pending",
    }
    key = assert_shredded_but_stored(rt, shared, "withdrawn")
    assert evaluator.content(shared.artifact).status_code == 410
    pending = queue(rt)
    assert [(p.key, p.reason, p.attempts) for p in pending] == [(key, "withdrawn", 1)]
    assert pending[0].last_error
    withdrawn = entries(client, principals, action="artifact.withdraw")
    assert len(withdrawn) == 1 and withdrawn[0]["details"]["key_shredded"] is True
    assert withdrawn[0]["details"]["objects_to_delete"] == [key]
    assert entries(client, principals, action="object.delete") == []

    monkeypatch.undo()  # the store is back: the next sweep deletes
    assert sweep_once(rt)["objects_deleted"] == 1
    assert not rt.store.exists(key) and queue(rt) == []
    deleted = entries(client, principals, action="object.delete")
    assert [(e["artifact"], e["details"]["key"]) for e in deleted] == [(shared.artifact["id"], key)]
    assert sweep_once(rt)["objects_deleted"] == 0


def test_a_withdrawal_that_deletes_at_once_answers_204_and_logs_each_step(
    client: FlaskClient, principals: Principals, lab: Any, shared: Shared, rt: Runtime
) -> None:
    key = helpers.object_key(rt, shared.artifact["id"])
    r = client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
    assert r.status_code == 204 and r.data == b""
    assert not rt.store.exists(key) and queue(rt) == []
    actions = [e["action"] for e in entries(client, principals)]
    assert actions[-2:] == ["artifact.withdraw", "object.delete"]


def test_expiry_with_the_store_down_shreds_and_the_sweeper_deletes_later(
    client: FlaskClient,
    principals: Principals,
    shared: Shared,
    granted: dict,
    rt: Runtime,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.advance(days=WINDOW_DAYS)
    store_down(rt, monkeypatch, StorageError("S3: 503 SlowDown"))
    report = sweep_once(rt)
    assert report["artifacts_expired"] == 1 and report["objects_deleted"] == 0
    key = assert_shredded_but_stored(rt, shared, "expired")
    assert [(p.key, p.reason) for p in queue(rt)] == [(key, "expired")]
    assert sweep_once(rt)["objects_deleted"] == 0  # still down: retried, counted
    assert queue(rt)[0].attempts == 2
    monkeypatch.undo()
    assert sweep_once(rt)["objects_deleted"] == 1
    assert not rt.store.exists(key)
    assert len(entries(client, principals, action="object.delete")) == 1


def test_a_deletion_whose_entry_could_not_be_written_is_finished_by_the_sweeper(
    client: FlaskClient,
    principals: Principals,
    lab: Any,
    shared: Shared,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store deleted, then the log failed: the queue keeps it, the sweeper logs it."""
    from gateway.services import lifecycle

    key = helpers.object_key(rt, shared.artifact["id"])
    finish = lifecycle._deleted

    def log_down(*args: Any, **kwargs: Any) -> bool:
        monkeypatch.setattr(lifecycle, "_deleted", finish)
        from gateway.errors import AuditUnavailable

        raise AuditUnavailable("the audit log could not record this action")

    monkeypatch.setattr(lifecycle, "_deleted", log_down)
    r = client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
    assert r.status_code == 202 and r.get_json()["deletion"] == "pending"
    assert not rt.store.exists(key) and len(queue(rt)) == 1
    assert sweep_once(rt)["objects_deleted"] == 1
    assert queue(rt) == []
    deleted = entries(client, principals, action="object.delete")
    assert len(deleted) == 1 and deleted[0]["details"]["found"] is False
