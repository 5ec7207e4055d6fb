"""Races closed by the database: one pending request and one active grant per evaluator and artifact.

The checks the services make first give the friendly answer; the partial unique indexes
are what hold when two requests, processes or instances race past those checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from gateway.clock import FrozenClock
from gateway.db import Database
from gateway.models import AccessRequest, Grant
from gateway.runtime import Runtime
from gateway.services import access
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.services.conftest import Evaluator, Shared, approve, denials, entries


def together(n: int, *calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` on threads at once; their results in order."""
    results: list[Any] = [None] * n
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, calls[i]())) for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_racing_requests_leave_one_pending(
    app: Flask,
    evaluator: Evaluator,
    shared: Shared,
    principals: Principals,
    monkeypatch: pytest.MonkeyPatch,
    rt: Runtime,
) -> None:
    """Two requests that both pass the friendly check: the database lets one through, the other is a 409."""
    barrier = threading.Barrier(2, timeout=10)
    check = access._refuse_duplicates

    def checked_then_wait(*args: Any) -> None:
        check(*args)
        barrier.wait()  # both have checked before either inserts

    monkeypatch.setattr(access, "_refuse_duplicates", checked_then_wait)

    def ask() -> int:
        return int(
            app.test_client()
            .post(
                f"/v1/artifacts/{shared.artifact['id']}/access-requests",
                json={"justification": "pre-deployment cyber evaluation"},
                headers=evaluator.auth,
            )
            .status_code
        )

    assert sorted(together(2, ask, ask)) == [201, 409]
    with rt.db.session() as session:
        pending = session.scalars(
            select(AccessRequest).where(AccessRequest.state == "pending")
        ).all()
    assert len(pending) == 1
    assert len(denials(evaluator.client, principals, "request already pending")) == 1


def _row(model: Any, **values: Any) -> Any:
    return insert(model.__table__).values(**values)


def test_the_database_itself_refuses_a_second_pending_request(
    rt: Runtime, evaluator: Evaluator, shared: Shared
) -> None:
    """From another engine (another process or instance), straight SQL: the index refuses."""
    first = evaluator.request(shared.artifact)
    other = Database(rt.config.database.url)
    with rt.db.session() as session:
        row = session.get(AccessRequest, first["id"])
        values = {
            c.name: getattr(row, c.key) for c in AccessRequest.__table__.columns if c.name != "id"
        }
    try:
        with pytest.raises(IntegrityError), other.session() as session:
            session.execute(_row(AccessRequest, id="req_duplicate", **values))
        with other.session() as session:  # a decided one is no duplicate
            session.execute(_row(AccessRequest, id="req_denied", **{**values, "state": "denied"}))
    finally:
        other.dispose()


def test_the_database_itself_refuses_a_second_active_grant(
    rt: Runtime, lab: Lab, evaluator: Evaluator, shared: Shared, granted: dict, clock: FrozenClock
) -> None:
    clock.advance(seconds=1)
    other = Database(rt.config.database.url)
    with rt.db.session() as session:
        row = session.get(Grant, granted["id"])
        values = {c.name: getattr(row, c.key) for c in Grant.__table__.columns}
    with other.session() as session:
        req = session.get(AccessRequest, values["request_id"])
        req_values = {c.name: getattr(req, c.key) for c in AccessRequest.__table__.columns}
        session.execute(_row(AccessRequest, **{**req_values, "id": "req_2", "state": "approved"}))
    try:
        duplicate = {**values, "id": "grt_duplicate", "request_id": "req_2"}
        with pytest.raises(IntegrityError), other.session() as session:
            session.execute(_row(Grant, **duplicate))
        with other.session() as session:  # an ended one is no duplicate
            session.execute(_row(Grant, **{**duplicate, "state": "revoked"}))
    finally:
        other.dispose()


def test_a_grant_past_its_end_does_not_block_a_new_one(
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    principals: Principals,
    clock: FrozenClock,
    rt: Runtime,
) -> None:
    """Its row still says active (no sweep yet): the approval expires it first, with its entry."""
    first = approve(lab, evaluator.request(shared.artifact, duration_hours=1)["id"]).get_json()
    clock.advance(hours=2)
    second = approve(lab, evaluator.request(shared.artifact)["id"])
    assert second.status_code == 201, second.get_json()
    with rt.db.session() as session:
        assert session.get(Grant, first["id"]).state == "expired"
        assert session.get(Grant, second.get_json()["id"]).state == "active"
    expired = entries(lab.client, principals, action="grant.expire")
    assert [e["grant"] for e in expired] == [first["id"]]


def test_approving_a_request_whose_artifact_was_withdrawn_meanwhile_is_refused(
    lab: Lab, evaluator: Evaluator, shared: Shared, monkeypatch: pytest.MonkeyPatch, rt: Runtime
) -> None:
    """The lab withdraws between the approval's checks and its transaction: no grant is made."""
    req = evaluator.request(shared.artifact)
    checked = access._require_pending

    def withdrawn_meanwhile(*args: Any) -> None:
        checked(*args)
        monkeypatch.setattr(access, "_require_pending", checked)
        r = lab.client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
        assert r.status_code in (202, 204)

    monkeypatch.setattr(access, "_require_pending", withdrawn_meanwhile)
    r = approve(lab, req["id"])
    assert r.status_code in (409, 410) and r.mimetype == "application/problem+json"
    with rt.db.session() as session:
        assert session.scalars(select(Grant)).all() == []


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.removesuffix("Z"))


def test_a_request_past_an_ended_grant_is_accepted(
    lab: Lab, evaluator: Evaluator, shared: Shared, clock: FrozenClock
) -> None:
    grant = approve(lab, evaluator.request(shared.artifact, duration_hours=1)["id"]).get_json()
    clock.advance(hours=1)
    assert _when(grant["not_after"]) <= clock.now()
    assert evaluator.ask(shared.artifact).status_code == 201
    assert clock.now() - _when(grant["not_before"]) == timedelta(hours=1)


def test_a_grant_that_expires_while_its_key_is_being_released_releases_nothing(
    evaluator: Evaluator,
    shared: Shared,
    lab: Lab,
    principals: Principals,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The grant was active when checked; its time is up by the release's transaction."""
    from gateway.services import release

    approve(lab, evaluator.request(shared.artifact, duration_hours=1)["id"])
    custody = release._custody

    def slow_custody(*args: Any) -> Any:
        identity = custody(*args)
        clock.advance(hours=1)  # the grant's not_after passes meanwhile
        return identity

    monkeypatch.setattr(release, "_custody", slow_custody)
    r = evaluator.content(shared.artifact)
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert entries(lab.client, principals, action="key.release") == []
    assert entries(lab.client, principals, action="content.download") == []


def test_an_artifact_withdrawn_while_its_key_is_being_released_releases_nothing(
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    lab: Lab,
    principals: Principals,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The header was made from the stored one; the lab withdraws before it is stored."""
    from gateway import age

    reheader = age.reheader

    def withdrawn_meanwhile(*args: Any) -> Any:
        made = reheader(*args)
        r = lab.client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
        assert r.status_code in (202, 204)
        return made

    monkeypatch.setattr(age, "reheader", withdrawn_meanwhile)
    r = evaluator.content(shared.artifact)
    assert r.status_code == 410 and r.mimetype == "application/problem+json"
    assert entries(lab.client, principals, action="key.release") == []
    assert denials(lab.client, principals, "artifact withdrawn")
