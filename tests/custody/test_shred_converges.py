"""A shred converges: a key destroyed whose commit then failed is finished, never left half-done.

A commit that fails just after the custody backend destroyed a key (a disk error, a lock
timeout, the database going away at that instant) cannot be caused on purpose at that
point, so it is injected: the real ``destroy`` runs, then every commit fails until the
fault is lifted. The same for a custody backend that is down at the destroy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from gateway.clock import FrozenClock
from gateway.custody import CustodyContext, CustodyUnavailable, KeyDestroyed, KeyRef
from gateway.models import Artifact, CustodyKey, Grant, PendingDeletion, Upload
from gateway.runtime import Runtime
from gateway.sweeper import sweep_once
from tests import helpers
from tests.api.conftest import Lab, lab
from tests.conftest import Principals
from tests.services.conftest import Evaluator, Shared, entries, evaluator, granted, shared

__all__ = ["evaluator", "granted", "lab", "shared"]


@dataclass
class CommitFault:
    """The real destroy runs, then its transaction fails as a failed commit would, until lifted.

    Raised from inside the transaction, just after the destroy: everything the transaction
    wrote is rolled back, exactly what a commit that fails leaves, without leaving the
    connection half-committed for the next test step.
    """

    destroyed: int = 0
    armed: bool = True
    failed: int = 0

    def lift(self) -> None:
        self.armed = False


@pytest.fixture
def fault(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> CommitFault:
    fault = CommitFault()
    real = rt.custody.destroy

    def destroy(ctx: CustodyContext, ref: KeyRef) -> bool:
        done = real(ctx, ref)
        fault.destroyed += done
        if fault.armed:
            fault.failed += 1
            raise OperationalError("COMMIT", {}, Exception("injected: the commit fails"))
        return done

    monkeypatch.setattr(rt.custody, "destroy", destroy)
    return fault


def stored_key(rt: Runtime, artifact_id: str) -> tuple[CustodyContext, KeyRef, bytes] | None:
    """The artifact's custody context, key reference and wrapped value; None once deleted."""
    with rt.db.session() as session:
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None
        row = session.get(CustodyKey, artifact.upload_id)
        upload = session.get(Upload, artifact.upload_id)
        assert upload is not None
        if row is None:
            return None
        ctx = CustodyContext(upload.id, row.artifact_id, upload.org)
        return ctx, KeyRef(row.key_ref), bytes(row.wrapped)


def state_of(rt: Runtime, artifact_id: str) -> str:
    with rt.db.session() as session:
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None
        return artifact.state


def assert_nothing_released(
    client: FlaskClient, principals: Principals, evaluator: Evaluator, shared: Shared
) -> None:
    """While shredding: no content, no key, no new request, no grant header kept."""
    got = evaluator.content(shared.artifact)
    assert got.status_code == 410, got.get_json()
    assert got.headers["Content-Type"] == "application/problem+json"
    assert evaluator.url(shared.artifact).status_code == 410
    assert evaluator.ask(shared.artifact).status_code == 410
    assert entries(client, principals, action="key.release") == []
    assert entries(client, principals, action="content.download") == []


def test_a_commit_that_fails_after_the_destroy_is_finished_by_the_sweeper(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict[str, Any],
    rt: Runtime,
    fault: CommitFault,
) -> None:
    aid = shared.artifact["id"]
    kept = stored_key(rt, aid)
    assert kept is not None
    ctx, ref, wrapped = kept

    r = client.delete(f"/v1/artifacts/{aid}", headers=lab.auth)

    fault.lift()
    assert r.status_code == 503, r.get_json()
    assert r.headers["Content-Type"] == "application/problem+json"
    assert fault.destroyed == 1 and fault.failed == 2  # tried twice, destroyed once
    assert state_of(rt, aid) == "shredding"
    assert stored_key(rt, aid) is not None  # the deletion of the row was rolled back...
    with pytest.raises(KeyDestroyed):  # ...but the key is gone: the row opens nothing
        rt.custody.unwrap(ctx, ref, wrapped)
    assert_nothing_released(client, principals, evaluator, shared)
    with rt.db.session() as session:
        assert session.get(Grant, granted["id"]).state == "revoked"  # type: ignore[union-attr]

    report = sweep_once(rt)

    assert report["shreds_finished"] == 1 and report["objects_deleted"] == 1
    assert state_of(rt, aid) == "withdrawn"
    key = helpers.object_key(rt, aid)
    with rt.db.session() as session:
        assert session.get(CustodyKey, ctx.upload_id) is None
        assert session.get(PendingDeletion, key) is None
    assert not rt.store.exists(key)
    assert len(entries(client, principals, action="artifact.withdraw")) == 1
    assert len(entries(client, principals, action="object.delete")) == 1
    assert sweep_once(rt)["shreds_finished"] == 0
    assert fault.destroyed == 1  # the sweeper's destroy found nothing more to destroy
    again = client.delete(f"/v1/artifacts/{aid}", headers=lab.auth)
    assert again.status_code == 410
    assert len(entries(client, principals, action="artifact.withdraw")) == 1


def test_an_expiry_whose_commit_fails_ends_expired_on_the_next_sweep(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict[str, Any],
    rt: Runtime,
    clock: FrozenClock,
    fault: CommitFault,
) -> None:
    aid = shared.artifact["id"]
    with rt.db.session() as session:
        session.execute(
            update(Artifact)
            .where(Artifact.id == aid)
            .values(review_ends_at=clock.now() - timedelta(seconds=1))
        )

    first = sweep_once(rt)  # the expiry step fails at its commit; the sweep goes on
    fault.lift()

    assert first["artifacts_expired"] == 0 and fault.destroyed == 1
    assert state_of(rt, aid) == "shredding"
    assert_nothing_released(client, principals, evaluator, shared)

    second = sweep_once(rt)

    assert second["shreds_finished"] == 1 and second["objects_deleted"] == 1
    assert state_of(rt, aid) == "expired"
    assert len(entries(client, principals, action="artifact.expire")) == 1
    assert entries(client, principals, action="artifact.withdraw") == []


def test_a_custody_backend_down_at_the_destroy_leaves_it_shredding_until_withdrawn_again(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict[str, Any],
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aid = shared.artifact["id"]
    real = rt.custody.destroy

    def down(ctx: CustodyContext, ref: KeyRef) -> bool:
        raise CustodyUnavailable("injected: the custody backend is unreachable")

    monkeypatch.setattr(rt.custody, "destroy", down)
    r = client.delete(f"/v1/artifacts/{aid}", headers=lab.auth)
    assert r.status_code == 503, r.get_json()
    assert state_of(rt, aid) == "shredding"
    kept = stored_key(rt, aid)
    assert kept is not None  # the wrapped value is kept until its key is gone
    assert_nothing_released(client, principals, evaluator, shared)
    assert sweep_once(rt)["shreds_finished"] == 0  # still down: retried next sweep
    assert state_of(rt, aid) == "shredding"

    monkeypatch.setattr(rt.custody, "destroy", real)
    again = client.delete(f"/v1/artifacts/{aid}", headers=lab.auth)

    # Finished, and answered as already withdrawn: the first withdrawal is the logged one.
    assert again.status_code == 410, again.get_json()
    assert "now finished" in again.get_json()["detail"]
    assert state_of(rt, aid) == "withdrawn"
    assert stored_key(rt, aid) is None
    with pytest.raises(KeyDestroyed):
        rt.custody.unwrap(*kept)
    assert len(entries(client, principals, action="artifact.withdraw")) == 1
