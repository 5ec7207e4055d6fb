"""A transaction that fails refuses its action; only an outage says the audit log is unavailable."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.errors import AuditUnavailable, BadRequest, Conflict
from gateway.events import fail_closed
from gateway.models import Org
from gateway.runtime import Runtime


def _orgs(rt: Runtime) -> int:
    with rt.db.session() as session:
        return session.query(Org).count()


def test_a_unique_conflict_is_409_and_nothing_is_kept(rt: Runtime) -> None:
    before = _orgs(rt)
    with fail_closed(rt) as session:
        session.add(Org(name="lab-x", kind="lab", created_at=rt.now()))
    with pytest.raises(Conflict), fail_closed(rt) as session:
        session.add(Org(name="lab-y", kind="lab", created_at=rt.now()))
        session.flush()
        session.add(Org(name="lab-x", kind="lab", created_at=rt.now()))
    assert _orgs(rt) == before + 1  # lab-y went with the refused transaction


def test_postgresql_refusing_a_value_is_400_and_losing_the_connection_is_503(
    rt: Runtime, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite stores NUL text and has no connection to lose")
    before = _orgs(rt)
    with pytest.raises(BadRequest), fail_closed(rt) as session:
        session.add(Org(name="lab-z", kind="lab", created_at=rt.now()))
        session.execute(text("select cast(:v as text)"), {"v": "a\x00b"})
    with pytest.raises(AuditUnavailable), fail_closed(rt) as session:
        session.add(Org(name="lab-z", kind="lab", created_at=rt.now()))
        session.execute(text("select pg_terminate_backend(pg_backend_pid())"))
    assert _orgs(rt) == before


def test_a_read_only_postgresql_is_an_outage_and_a_foreign_key_is_the_gateways_fault(
    rt: Runtime, db_url: str
) -> None:
    """A standby after a failover (SQLSTATE 25006, raised as InternalError) is the 503 of an
    outage; a row naming a parent that does not exist is no conflict to try again (500)."""
    from sqlalchemy.exc import IntegrityError

    from gateway.models import Principal

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no read-only transactions of this kind")
    before = _orgs(rt)
    with pytest.raises(AuditUnavailable), fail_closed(rt) as session:
        session.execute(text("SET TRANSACTION READ ONLY"))
        session.add(Org(name="lab-r", kind="lab", created_at=rt.now()))
        session.flush()
    with pytest.raises(IntegrityError), fail_closed(rt) as session:
        session.add(
            Principal(id="prn_x", name="x", org="no-such-org", role="lab", created_at=rt.now())
        )
        session.flush()
    assert _orgs(rt) == before
