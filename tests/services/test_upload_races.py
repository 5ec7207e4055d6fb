"""Races of uploads and identities closed by the database, on SQLite and PostgreSQL alike.

Each test forces the interleaving it names (a barrier or an event between a request's
read and its write), so it does not depend on the scheduler to find the race.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from nacl.signing import SigningKey as Ed25519Key
from sqlalchemy import func, select

from gateway.models import CustodyKey, Org, SigningKey, Upload, UploadPart
from gateway.runtime import Runtime
from gateway.services import identity, uploads
from tests import helpers
from tests.api.conftest import Lab
from tests.api.test_completion import Held, Prepared, while_assembling
from tests.services.test_races import together

MIB = 1 << 20


def _custody_key_kept(rt: Runtime, upload_id: str) -> bool:
    with rt.db.session() as session:
        return session.get(CustodyKey, upload_id) is not None


def _after_check(
    monkeypatch: pytest.MonkeyPatch, released: threading.Event, reached: threading.Event
) -> None:
    """An abort passes its check on the upload it read, then waits for ``released``."""
    check = uploads.require_open

    def checked_then_wait(rt: Runtime, upload: Upload) -> None:
        check(rt, upload)
        if threading.current_thread() is not threading.main_thread():
            reached.set()
            assert released.wait(20)

    monkeypatch.setattr(uploads, "require_open", checked_then_wait)


def test_an_abort_that_checked_before_a_completion_never_destroys_the_artifacts_key(
    app: Flask, lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The abort read an open upload; the completion finishes first; the abort is then a 409."""
    up = Prepared(lab, size=MIB)
    released, reached = threading.Event(), threading.Event()
    _after_check(monkeypatch, released, reached)
    answer: dict[str, Any] = {}

    def abort() -> None:
        answer["r"] = app.test_client().delete(f"/v1/uploads/{up.upload['id']}", headers=lab.auth)

    thread = threading.Thread(target=abort)
    thread.start()
    assert reached.wait(20)
    completed = up.complete(app.test_client())
    released.set()
    thread.join(30)
    assert completed.status_code == 201, completed.get_json()
    assert answer["r"].status_code == 409, answer["r"].get_json()
    assert answer["r"].mimetype == "application/problem+json"
    assert up.state(rt) == "completed"
    assert _custody_key_kept(rt, up.upload["id"])
    assert up.stored(rt, completed.get_json()["id"]) == up.data


def test_a_timeout_listed_before_a_completion_never_destroys_the_artifacts_key(
    app: Flask, lab: Lab, rt: Runtime
) -> None:
    """The sweeper listed the upload open past its deadline; a completion committed before its write."""
    up = Prepared(lab, size=MIB)
    completed = up.complete(app.test_client())
    assert completed.status_code == 201, completed.get_json()
    assert not uploads._time_out(rt, up.upload["id"])  # the sweeper's write for what it listed
    assert up.state(rt) == "completed"
    assert _custody_key_kept(rt, up.upload["id"])
    assert up.stored(rt, completed.get_json()["id"]) == up.data


def test_a_timeout_during_a_completion_leaves_the_claim_and_its_key(
    app: Flask, lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the claimant assembles, the sweeper's time-out of the upload changes nothing."""
    up = Prepared(lab, size=MIB)
    held = Held(rt, monkeypatch)
    first, timed_out = while_assembling(
        app, up, held, lambda: uploads._time_out(rt, up.upload["id"])
    )
    assert timed_out is False
    assert first.status_code == 201, first.get_json()
    assert _custody_key_kept(rt, up.upload["id"])
    assert up.stored(rt, first.get_json()["id"]) == up.data


def _parties(rt: Runtime) -> int:
    """Two on PostgreSQL; one on SQLite, whose write lock taken at BEGIN already serialises."""
    return 2 if rt.db.engine.dialect.name == "postgresql" else 1


def test_the_same_part_sent_twice_at_once_is_stored_once_and_never_a_500(
    app: Flask, lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both bodies reach the store, then both record the part: one row, both 200."""
    upload = lab.create()
    data = helpers.age_file(upload["recipient"], helpers.random_bytes(MIB, seed=9))
    part = helpers.split(data, upload["part_size"])[0]
    barrier = threading.Barrier(2, timeout=20)
    put_part = rt.store.put_part

    def stored_then_wait(*args: Any) -> Any:
        stored = put_part(*args)
        barrier.wait()  # both bodies are stored before either row is written
        return stored

    monkeypatch.setattr(rt.store, "put_part", stored_then_wait)

    def send() -> Callable[[], Any]:
        client = app.test_client()
        return lambda: client.put(
            f"/v1/uploads/{upload['id']}/parts/1",
            data=part,
            headers={**lab.auth, "X-Content-SHA256": helpers.sha(part)},
        )

    answers = together(2, send(), send())
    assert [a.status_code for a in answers] == [200, 200], [a.get_json() for a in answers]
    with rt.db.session() as session:
        rows = session.scalars(select(UploadPart).where(UploadPart.upload_id == upload["id"]))
        assert [(r.number, r.sha256) for r in rows] == [(1, helpers.sha(part))]


def test_racing_ensure_org_makes_one_org_and_neither_fails(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two operators both read no org, then both insert it: one org, both get it."""
    barrier = threading.Barrier(_parties(rt), timeout=20)
    create_org = identity.create_org

    def read_then_wait(*args: Any) -> Org:
        barrier.wait()  # both have read no org before either inserts
        return create_org(*args)

    monkeypatch.setattr(identity, "create_org", read_then_wait)

    def ensure() -> str:
        with rt.db.session() as session:
            return identity.ensure_org(session, "agency-z", "agency", rt.now()).name

    assert together(_parties(rt), *[ensure] * _parties(rt)) == ["agency-z"] * _parties(rt)
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).where(Org.name == "agency-z")) == 1


def test_racing_registrations_of_one_signing_key_keep_one_row_and_both_succeed(
    app: Flask, lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two registrations of the same key that both found none: one row, both 200."""
    key = Ed25519Key.generate()
    public = helpers.public_b64(key)
    me = app.test_client().get("/v1/me", headers=lab.auth).get_json()
    body = helpers.key_registration(key, me)
    barrier = threading.Barrier(_parties(rt), timeout=20)
    new_id = identity.new_id

    def found_none_then_wait(prefix: str) -> str:
        if prefix == "key":
            barrier.wait()  # both have found no such key before either inserts
        return new_id(prefix)

    monkeypatch.setattr(identity, "new_id", found_none_then_wait)

    def register() -> Callable[[], Any]:
        client = app.test_client()
        return lambda: client.put("/v1/me/signing-key", json=body, headers=lab.auth)

    answers = together(_parties(rt), *[register() for _ in range(_parties(rt))])
    assert [a.status_code for a in answers] == [200] * _parties(rt), [a.get_json() for a in answers]
    with rt.db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(SigningKey).where(SigningKey.public_key == public)
        )
    assert count == 1


def test_ensure_org_takes_an_org_committed_between_its_look_and_create_orgs_own(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other operator commits after ensure_org's read, before create_org's: no Conflict."""
    if rt.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock, taken at BEGIN, lets no other writer in between")
    create_org = identity.create_org

    def another_commits_first(session: Any, name: str, kind: str, now: Any) -> Org:
        with rt.db.session() as other:
            create_org(other, name, kind, now)
        return create_org(session, name, kind, now)

    monkeypatch.setattr(identity, "create_org", another_commits_first)
    with rt.db.session() as session:
        assert identity.ensure_org(session, "agency-y", "agency", rt.now()).name == "agency-y"
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).where(Org.name == "agency-y")) == 1
