"""The metadata database handle: one SQLAlchemy engine and session factory per app.

SQLite (WAL mode, foreign keys on) is the embedded default; any SQLAlchemy URL
(PostgreSQL for several instances) can be configured instead. Models of every area
derive from :class:`Base`; the schema is created and upgraded by Alembic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.dml import Update

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; SQLite gets WAL, durable commits and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
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
    return create_engine(url, pool_pre_ping=True)


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
