"""What the engine gives each database, whatever the server's own defaults (gateway.db)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.exc import OperationalError

from gateway.audit import store
from gateway.db import LOCK_TIMEOUT_SECONDS, Database, database_url
from tests import pg
from tests.audit.conftest import add_entry

pytestmark = pytest.mark.postgresql


@pytest.fixture
def pg_db(pg_cluster: pg.Cluster) -> Iterator[tuple[pg.Cluster, str]]:
    """A migrated database whose server defaults differ from what the gateway needs."""
    from gateway.migrations import upgrade

    with pg_cluster.database(pg_cluster.template(upgrade)) as url:
        name = make_url(url).database
        with Database(url).engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f"ALTER DATABASE {name} SET timezone = 'Pacific/Kiritimati'"))
            conn.execute(
                text(f"ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'")
            )
        yield pg_cluster, url


def test_a_bare_postgresql_url_gets_the_installed_driver() -> None:
    assert database_url("postgresql://gw@db/gateway").drivername == "postgresql+psycopg"
    assert database_url("postgres://gw@db/gateway").drivername == "postgresql+psycopg"
    assert database_url("postgresql+psycopg://gw@db/x").drivername == "postgresql+psycopg"
    assert database_url("sqlite:///var/gateway.db").drivername == "sqlite"


def test_sessions_run_read_committed_in_utc(pg_db: tuple[pg.Cluster, str]) -> None:
    _, url = pg_db
    db = Database(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        with db.session() as s:
            assert s.scalar(text("SHOW transaction_isolation")) == "read committed"
            assert s.scalar(text("SHOW TimeZone")) == "UTC"
            assert s.scalar(text("SHOW lock_timeout")) == f"{LOCK_TIMEOUT_SECONDS}s"
            # An aware time is stored as its UTC wall-clock time, and read back so.
            kiritimati = timezone(timedelta(hours=14))
            add_entry(s, 0, time=datetime(2026, 11, 27, 2, 0, tzinfo=kiritimati))
            store.integrate(s)
        with db.session() as s:
            stored = s.scalar(select(store.Entry.time).where(store.Entry.index == 0))
            assert stored == datetime(2026, 11, 26, 12, 0)
            assert s.scalar(text("SELECT now() AT TIME ZONE 'UTC'")) <= datetime.now(UTC).replace(
                tzinfo=None
            ) + timedelta(seconds=5)
    finally:
        db.dispose()


def test_options_in_the_url_win_so_a_lock_wait_is_configurable(
    pg_db: tuple[pg.Cluster, str],
) -> None:
    """Of two integrators, the second waits for the head's lock at most lock_timeout, then fails."""
    _, url = pg_db
    holder, waiter = Database(url), Database(url + "&options=-c%20lock_timeout%3D500ms")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.session() as s:
            add_entry(s, 0)
            store.integrate(s)
            locked.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"), waiter.session() as s:
            add_entry(s, 1)
            store.integrate(s)
        assert time.monotonic() - started < 5
    finally:
        release.set()
        thread.join()
        holder.dispose()
        waiter.dispose()
