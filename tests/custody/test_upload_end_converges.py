"""An upload's end converges: the upload ends first, its key is destroyed after, or by the sweeper.

A custody backend down at the destroy is a real fault of the backend's (the wrapper
raises what the backend raises when it cannot be reached); a commit that fails just after
the backend destroyed the key cannot be caused at that point on purpose, so it is
injected as ``tests/custody/test_shred_converges.py`` does.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from gateway.custody import CustodyContext, CustodyUnavailable, KeyDestroyed, KeyRef
from gateway.models import CustodyKey, Upload
from gateway.runtime import Runtime
from gateway.sweeper import sweep_once
from tests.api.conftest import Lab, lab
from tests.conftest import Principals
from tests.services.conftest import entries

__all__ = ["lab"]


def kept_key(rt: Runtime, upload_id: str) -> tuple[CustodyContext, KeyRef, bytes] | None:
    """The upload's custody context, key reference and wrapped value; None once deleted."""
    with rt.db.session() as session:
        row = session.get(CustodyKey, upload_id)
        upload = session.get(Upload, upload_id)
        assert upload is not None
        if row is None:
            return None
        return (
            CustodyContext(upload_id, row.artifact_id, upload.org),
            KeyRef(row.key_ref),
            bytes(row.wrapped),
        )


def state_of(rt: Runtime, upload_id: str) -> str:
    with rt.db.session() as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        return upload.state


def failing_destroy(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, *, destroy_first: bool
) -> dict[str, Any]:
    """Make ``rt.custody.destroy`` fail until ``state["armed"]`` is False: with
    ``destroy_first``, after the real destroy (the commit fails); else before (backend down)."""
    real = rt.custody.destroy
    state: dict[str, Any] = {"armed": True, "destroyed": 0}

    def destroy(ctx: CustodyContext, ref: KeyRef) -> bool:
        if state["armed"] and not destroy_first:
            raise CustodyUnavailable("the custody backend cannot be reached")
        done = real(ctx, ref)
        state["destroyed"] += done
        if state["armed"]:
            raise OperationalError("COMMIT", {}, Exception("injected: the commit fails"))
        return done

    monkeypatch.setattr(rt.custody, "destroy", destroy)
    return state


@pytest.mark.parametrize("destroy_first", [False, True], ids=["backend-down", "commit-fails"])
def test_an_abort_ends_the_upload_and_the_sweeper_destroys_the_key_left(
    lab: Lab,
    client: Any,
    principals: Principals,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    destroy_first: bool,
) -> None:
    up = lab.create()
    assert lab.put(up, 1, b"abc").status_code == 200
    kept = kept_key(rt, up["id"])
    assert kept is not None
    ctx, ref, wrapped = kept
    fault = failing_destroy(rt, monkeypatch, destroy_first=destroy_first)

    r = client.delete(f"/v1/uploads/{up['id']}", headers=lab.auth)

    assert r.status_code == 204, r.get_json()
    assert state_of(rt, up["id"]) == "aborted"  # ended, whatever the destroy did
    assert len(entries(client, principals, action="upload.abort")) == 1
    assert lab.put(up, 2, b"abc").status_code == 410
    assert kept_key(rt, up["id"]) is not None  # the row's deletion did not commit
    assert fault["destroyed"] == int(destroy_first)

    assert sweep_once(rt)["upload_keys_destroyed"] == 0  # still failing: kept for the next
    fault["armed"] = False
    assert sweep_once(rt)["upload_keys_destroyed"] == 1
    assert kept_key(rt, up["id"]) is None
    with pytest.raises(KeyDestroyed):
        rt.custody.unwrap(ctx, ref, wrapped)
    assert sweep_once(rt)["upload_keys_destroyed"] == 0
    assert len(entries(client, principals, action="upload.abort")) == 1


def test_a_timed_out_upload_has_its_key_destroyed_and_an_open_one_keeps_it(
    lab: Lab, rt: Runtime, clock: Any
) -> None:
    stale, fresh = lab.create(), None
    clock.advance(hours=rt.config.uploads.open_ttl_hours + 1)
    fresh = lab.create(name="model-y")
    report = sweep_once(rt)
    assert report["uploads_timed_out"] == 1
    assert report["upload_keys_destroyed"] == 0  # destroyed by the time-out itself
    assert state_of(rt, stale["id"]) == "timed_out"
    assert kept_key(rt, stale["id"]) is None
    assert state_of(rt, fresh["id"]) == "open"
    assert kept_key(rt, fresh["id"]) is not None  # an open upload's key is never swept
