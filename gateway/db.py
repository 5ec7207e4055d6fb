"""The metadata database handle: one SQLAlchemy engine and session factory per app.

SQLite (WAL mode, durable commits, foreign keys on) is the embedded default. PostgreSQL
is for several instances: ``postgresql://`` URLs use the psycopg 3 driver. On both, the
guarantees the services rely on are the same:

- **Isolation.** SQLite takes its write lock at ``BEGIN`` (``BEGIN IMMEDIATE``), so
  writing transactions run one at a time. PostgreSQL runs at ``READ COMMITTED``, set
  on the engine whatever the server's default: each statement sees what was committed
  before it began. What must not race is serialised explicitly: the audit log's head
  row is locked (``SELECT ... FOR UPDATE``) by every append, and state changes are
  compare-and-set updates (:func:`cas_update`), which PostgreSQL re-checks against
  the row as committed by whoever held it before, so of two racers exactly one sees 1.
  A stricter level would make those waits into serialisation failures, answered 503.
- **Waits are bounded.** A lock is waited for at most :data:`LOCK_TIMEOUT_SECONDS`
  (SQLite's busy timeout, PostgreSQL's ``lock_timeout``); then the transaction fails,
  and an audited action fails closed.
- **Times are UTC.** Timestamps are stored naive, in UTC; PostgreSQL sessions run with
  ``TimeZone=UTC`` so nothing is shifted by a server's local zone.

Models of every area derive from :class:`Base`; the schema is created and upgraded by
Alembic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import URL, CursorResult, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.dml import Update

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LOCK_TIMEOUT_SECONDS = 30
"""The longest a transaction waits for a lock another holds before it fails."""

POSTGRESQL_DRIVER = "postgresql+psycopg"
"""The driver a bare ``postgresql://`` (or ``postgres://``) URL is given: psycopg 3."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_SECONDS * 1000}")
    cur.close()


def database_url(url: str) -> URL:
    """``url`` parsed, a bare ``postgresql://`` given the psycopg 3 driver (the one installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=POSTGRESQL_DRIVER)
    return parsed


def _postgresql_engine(url: URL) -> Engine:
    """READ COMMITTED, UTC, bounded lock waits (see the module note); options in the URL kept."""
    given = url.query.get("options", "")
    options = " ".join(
        (
            "-c TimeZone=UTC",
            f"-c lock_timeout={LOCK_TIMEOUT_SECONDS}s",
            "-c application_name=gateway",
            *([given] if isinstance(given, str) and given else []),
        )
    )
    return create_engine(
        url.difference_update_query(["options"]),
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        connect_args={"options": options},
    )


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` (see the module note for what each database gets)."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgresql_engine(parsed)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": LOCK_TIMEOUT_SECONDS}
        )
        event.listen(engine, "connect", _sqlite_pragmas)

        # Take the write lock at BEGIN so that concurrent writers queue instead of
        # failing on lock upgrade (the audit log's single append sequence relies on it).
        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _no_pysqlite_tx(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(parsed, pool_pre_ping=True)


class Database:
    """The engine and session factory for one application instance."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self.sessionmaker() as s, s.begin():
            yield s

    def create_all(self) -> None:
        """Create every table directly (tests); production uses Alembic migrations."""
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def cas_update(session: Session, statement: Update) -> int:
    """Run a conditional UPDATE (a compare-and-set); how many rows it changed.

    The condition is the expected current state (``WHERE id = ? AND state = 'pending'``): of
    two requests racing to change a row, exactly one sees 1, so exactly one acts.
    """
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # an UPDATE always answers with a cursor
    return int(result.rowcount)
