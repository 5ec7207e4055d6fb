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
- **One leader per job.** :meth:`Database.leader` says whether this caller may run a job
  (a sweep step) now, and keeps every other process, thread and instance on the same
  database from running it until the block ends, without waiting: PostgreSQL's
  ``pg_try_advisory_lock`` on a connection of its own, SQLite's one machine a
  non-blocking ``flock`` on a file beside the database. Either is released when its
  holder dies (the connection or the file closes), so a crashed leader blocks nobody.

Models of every area derive from :class:`Base`; the schema is created and upgraded by
Alembic.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event, text
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


log = logging.getLogger("gateway.db")
_LEADER_NAME = re.compile(r"[a-z0-9][a-z0-9 ._:-]{0,127}")
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
#: Leaders of in-memory SQLite databases (one process by definition), by URL and name.
_MEMORY_LEADERS: dict[tuple[str, str], threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


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

    @contextmanager
    def leader(self, name: str) -> Iterator[bool]:
        """Whether this caller leads job ``name`` now; if so, nobody else does until the block ends.

        Never waits: a caller that gets False should skip the job (another is running it).
        ``name`` is lowercase letters, digits, spaces and ``._:-``, at most 128 characters.
        """
        if not _LEADER_NAME.fullmatch(name):
            raise ValueError(f"leader name {name!r}: lowercase letters, digits, spaces, ._:-")
        backend = self.engine.dialect.name
        if backend == "postgresql":
            with self._advisory_lock(name) as held:
                yield held
        elif backend == "sqlite":
            with self._file_lock(name) as held:
                yield held
        else:  # not a supported database: nothing to exclude other instances with
            yield True

    @contextmanager
    def _advisory_lock(self, name: str) -> Iterator[bool]:
        """A session-level advisory lock, on a connection held for the block and nothing else."""
        digest = hashlib.sha256(b"gateway.leader\0" + name.encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)  # advisory keys are bigint
        with self.engine.connect() as conn:
            held = bool(conn.execute(_TRY_LOCK, {"key": key}).scalar())
            conn.commit()  # the lock outlives the transaction; the connection idles outside one
            try:
                yield held
            finally:
                if held:
                    try:
                        conn.execute(_UNLOCK, {"key": key})
                        conn.commit()
                    except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                        log.warning(
                            "could not release leader lock %r; closing its connection", name
                        )
                        conn.invalidate()

    @contextmanager
    def _file_lock(self, name: str) -> Iterator[bool]:
        """``flock`` on ``<database>.leader-<name>`` (an in-memory database: a process lock)."""
        path = make_url(self.url).database
        if not path or path == ":memory:":
            with _MEMORY_GUARD:
                lock = _MEMORY_LEADERS.setdefault((self.url, name), threading.Lock())
            held = lock.acquire(blocking=False)
            try:
                yield held
            finally:
                if held:
                    lock.release()
            return
        lock_path = Path(f"{path}.leader-{re.sub(r'[^a-z0-9]+', '-', name).strip('-')}")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            yield held  # the lock goes with the descriptor, closed below
        finally:
            os.close(fd)


def cas_update(session: Session, statement: Update) -> int:
    """Run a conditional UPDATE (a compare-and-set); how many rows it changed.

    The condition is the expected current state (``WHERE id = ? AND state = 'pending'``): of
    two requests racing to change a row, exactly one sees 1, so exactly one acts.
    """
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # an UPDATE always answers with a cursor
    return int(result.rowcount)
