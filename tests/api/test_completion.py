"""Completion is idempotent and crash-safe: one request assembles, failures never cost the parts.

An upload is claimed (``open`` to ``completing``) before the store is touched; only the
claimant assembles; a failure before assembly returns it to ``open``; a failure after
keeps the object, and the same completion sent again (or the sweeper) finishes it.
Duplicates get the same artifact or a clear 409, never a 500 and never a deletion.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from gateway.audit import store as audit_store
from gateway.clock import FrozenClock
from gateway.models import Artifact, Upload, UploadPart
from gateway.runtime import Runtime
from gateway.storage import StorageError
from gateway.sweeper import sweep_once
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals

MIB = 1 << 20


class Prepared:
    """An upload whose parts are all stored, and the signed completion body for it."""

    def __init__(self, lab: Lab, size: int = 6 * MIB) -> None:
        self.lab = lab
        self.plaintext = helpers.random_bytes(size, seed=size)
        self.upload = lab.create()
        self.data = helpers.age_file(self.upload["recipient"], self.plaintext)
        lab.put_all(self.upload, self.data)
        manifest = helpers.manifest(self.upload, self.data, self.plaintext)
        self.body = {"manifest": manifest, "signature": helpers.sign(manifest, lab.key)}

    def complete(self, client: Any = None, body: dict[str, Any] | None = None) -> Any:
        return (client or self.lab.client).post(
            f"/v1/uploads/{self.upload['id']}/complete",
            json=body or self.body,
            headers=self.lab.auth,
        )

    def state(self, rt: Runtime) -> str:
        with rt.db.session() as session:
            row = session.get(Upload, self.upload["id"])
            assert row is not None
            return row.state

    def parts(self, rt: Runtime) -> int:
        with rt.db.session() as session:
            return session.query(UploadPart).filter_by(upload_id=self.upload["id"]).count()

    def stored(self, rt: Runtime, artifact_id: str) -> bytes:
        return b"".join(rt.store.open_read(helpers.object_key(rt, artifact_id)))


def fail_once(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """The audit log fails (a disk error, a lock timeout) when ``action`` is first appended."""
    append = audit_store.append

    def failing(session: Any, **fields: Any) -> Any:
        if fields["action"] == action:
            monkeypatch.setattr(audit_store, "append", append)
            raise OperationalError("INSERT INTO audit_entries", {}, Exception("disk I/O error"))
        return append(session, **fields)

    monkeypatch.setattr(audit_store, "append", failing)


def test_a_database_failure_after_assembly_keeps_the_object_and_a_retry_finishes(
    lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = Prepared(lab)
    fail_once(monkeypatch, "upload.complete")
    r = up.complete()
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert up.state(rt) == "completing" and up.parts(rt) == 2
    again = up.complete()
    assert again.status_code == 201, again.get_json()
    assert up.stored(rt, again.get_json()["id"]) == up.data


def test_a_store_failure_during_assembly_returns_the_upload_to_open(
    lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = Prepared(lab)
    assemble = rt.store.complete_upload

    def down(*args: Any) -> None:
        monkeypatch.setattr(rt.store, "complete_upload", assemble)
        raise StorageError("S3: 503 SlowDown")

    monkeypatch.setattr(rt.store, "complete_upload", down)
    r = up.complete()
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert up.state(rt) == "open" and up.parts(rt) == 2
    again = up.complete()
    assert again.status_code == 201 and up.stored(rt, again.get_json()["id"]) == up.data


class Held:
    """The store's assembly, held on its first call until released; every call counted."""

    def __init__(self, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.entered, self.go = threading.Event(), threading.Event()
        assemble = rt.store.complete_upload

        def held(*args: Any) -> None:
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                assert self.go.wait(20)
            assemble(*args)

        monkeypatch.setattr(rt.store, "complete_upload", held)


def while_assembling(
    app: Flask, up: Prepared, held: Held, during: Callable[[], Any]
) -> tuple[Any, Any]:
    """Run ``during`` while the first completion is inside the store's assembly."""
    first: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: first.setdefault("r", up.complete(app.test_client())))
    thread.start()
    assert held.entered.wait(20)
    try:
        seen = during()
    finally:
        held.go.set()
        thread.join(30)
    return first["r"], seen


def test_a_duplicate_complete_while_one_assembles_is_409_and_then_the_same_artifact(
    app: Flask, lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = Prepared(lab)
    held = Held(rt, monkeypatch)
    first, duplicate = while_assembling(app, up, held, lambda: up.complete(app.test_client()))
    assert duplicate.status_code == 409 and duplicate.mimetype == "application/problem+json"
    assert "being completed" in duplicate.get_json()["detail"]
    assert first.status_code == 201, first.get_json()
    assert held.calls == 1  # exactly one request assembled
    again = up.complete()
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert up.stored(rt, first.get_json()["id"]) == up.data


def test_racing_duplicates_get_one_artifact_and_never_a_500(
    app: Flask, lab: Lab, rt: Runtime
) -> None:
    up = Prepared(lab, size=MIB)
    answers: list[Any] = [None] * 4
    threads = [
        threading.Thread(target=lambda i=i: answers.__setitem__(i, up.complete(app.test_client())))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, statuses
    made = {a.get_json()["id"] for a in answers if a.status_code in (200, 201)}
    assert len(made) == 1
    with rt.db.session() as session:
        assert session.query(Artifact).count() == 1
    assert up.stored(rt, made.pop()) == up.data


def test_abort_and_part_uploads_while_completing_are_409(
    app: Flask, lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = Prepared(lab)
    held = Held(rt, monkeypatch)
    parts = helpers.split(up.data, up.upload["part_size"])

    def meanwhile() -> tuple[Any, Any]:
        client = app.test_client()
        aborted = client.delete(f"/v1/uploads/{up.upload['id']}", headers=lab.auth)
        resent = client.put(
            f"/v1/uploads/{up.upload['id']}/parts/1",
            data=parts[0],
            headers={**lab.auth, "X-Content-SHA256": helpers.sha(parts[0])},
        )
        return aborted, resent

    first, (aborted, resent) = while_assembling(app, up, held, meanwhile)
    assert aborted.status_code == 409 and resent.status_code == 409
    assert first.status_code == 201
    assert up.stored(rt, first.get_json()["id"]) == up.data


def test_a_completed_upload_answers_the_same_completion_with_its_artifact(
    lab: Lab, rt: Runtime
) -> None:
    up = Prepared(lab, size=MIB)
    first = up.complete()
    assert first.status_code == 201
    again = up.complete()
    assert again.status_code == 200 and again.get_json() == first.get_json()
    other = dict(up.body, signature=helpers.sign({**up.body["manifest"], "name": "x"}, lab.key))
    refused = up.complete(body=other)
    assert refused.status_code == 409 and first.get_json()["id"] in refused.get_json()["detail"]


def _claim_and_vanish(rt: Runtime, lab: Lab, principals: Principals, up: Prepared) -> None:
    """A claimant that committed its claim and then died before the store assembled."""
    from gateway.caller import Caller
    from gateway.services import completion, identity

    actor = identity.authenticate(rt, principals.tokens["lab"])
    done = completion.Completion(up.body["manifest"], up.body["signature"])
    claim = completion.claim(rt, Caller(actor), up.upload["id"], done)
    assert isinstance(claim, completion.Claim)


def test_a_stale_completion_that_never_assembled_is_returned_to_open_by_the_sweeper(
    lab: Lab, rt: Runtime, principals: Principals, clock: FrozenClock
) -> None:
    up = Prepared(lab, size=MIB)
    _claim_and_vanish(rt, lab, principals, up)
    assert up.state(rt) == "completing"
    assert up.complete().status_code == 409  # not stale yet: someone may be assembling
    clock.advance(seconds=rt.config.uploads.completing_timeout_seconds)
    report = sweep_once(rt)
    assert report["completions_reverted"] == 1 and up.state(rt) == "open"
    assert up.complete().status_code == 201


def test_a_stale_completion_is_taken_over_by_the_same_completion(
    lab: Lab, rt: Runtime, principals: Principals, clock: FrozenClock
) -> None:
    up = Prepared(lab, size=MIB)
    _claim_and_vanish(rt, lab, principals, up)
    clock.advance(seconds=rt.config.uploads.completing_timeout_seconds)
    r = up.complete()
    assert r.status_code == 201 and up.stored(rt, r.get_json()["id"]) == up.data


def test_a_stale_completion_whose_object_was_assembled_is_finished_by_the_sweeper(
    lab: Lab,
    rt: Runtime,
    principals: Principals,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up = Prepared(lab, size=MIB)
    fail_once(monkeypatch, "upload.complete")
    assert up.complete().status_code == 503
    clock.advance(seconds=rt.config.uploads.completing_timeout_seconds)
    assert sweep_once(rt)["completions_finished"] == 1
    assert up.state(rt) == "completed"
    r = up.complete()
    assert r.status_code == 200 and up.stored(rt, r.get_json()["id"]) == up.data
    completed = [
        e["entry"]
        for e in lab.client.get(
            "/v1/audit/entries?action=upload.complete", headers=principals.auth("auditor")
        ).get_json()["items"]
    ]
    assert len(completed) == 1 and completed[0]["org"] == "lab-a" and completed[0]["role"] == "lab"
