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

What is deleted from SQLite leaves its files. Every connection sets ``secure_delete``, so
SQLite zeroes the bytes of deleted rows and freed pages rather than leaving them behind,
and :meth:`Database.scrub` (which a shred calls once it commits) checkpoints the
write-ahead log into the database and truncates it, so no old page image outlives the
shred there either. The database file is created mode 0600 before SQLite opens it; SQLite
gives its ``-wal`` and ``-shm`` files the database file's mode. A PostgreSQL server's WAL,
replicas and backups are the operator's: the gateway cannot scrub them (the README says
what to do).

Models of every area derive from :class:`Base`; the schema is created and upgraded by
Alembic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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

SCRUB_WAIT_SECONDS = 5
"""The longest :meth:`Database.scrub` waits for readers of the write-ahead log to finish."""

FILE_MODE = 0o600
"""The mode of the SQLite database file (and so of its ``-wal`` and ``-shm`` files)."""

DIR_MODE = 0o700
"""The mode of a directory the gateway creates to hold its SQLite database."""

log = logging.getLogger("gateway.db")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Deleted rows (a shredded custody key, a grant's header) are zeroed, not left in free space.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_SECONDS * 1000}")
    cur.close()


def sqlite_file(url: URL) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None  # a URI filename: SQLite parses it, and creates the file itself
    return Path(url.database)


def create_private(path: Path) -> None:
    """Create the empty database file ``path`` with :data:`FILE_MODE`, if it is not there.

    SQLite would create it with the process's umask (0644, readable by every local user).
    An empty file is a valid empty database to SQLite. A missing directory is left for
    SQLite to report, as it would have.
    """
    if not path.parent.is_dir():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


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
        path = sqlite_file(parsed)

        @event.listens_for(engine, "do_connect")
        def _private_file(*_args: Any) -> None:
            if path is not None:
                create_private(path)

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

    def scrub(self) -> bool:
        """Empty SQLite's write-ahead log into the database, so deleted rows survive nowhere.

        The shred flows call this once their transaction has committed: with
        ``secure_delete`` on, the committed pages hold zeroes where the deleted rows
        were, and a ``wal_checkpoint(TRUNCATE)`` writes them over the database's old
        pages and cuts the log (which still holds the old page images) to zero bytes. It
        waits up to :data:`SCRUB_WAIT_SECONDS` for readers of the log; if they do not
        finish, or anything fails, it says so in the log and answers False: the shred
        stands, and the next scrub (or the last connection's close) empties the log.
        Nothing to do on PostgreSQL (True): its WAL and backups are the server's.
        """
        if self.engine.dialect.name != "sqlite":
            return True
        try:
            raw = self.engine.raw_connection()
            try:
                emptied = _checkpoint(raw.cursor())
            finally:
                raw.close()
        except Exception as exc:  # noqa: BLE001 - the shred has committed; this only cleans up
            log.warning("could not empty the database's write-ahead log after a shred: %s", exc)
            return False
        if not emptied:
            log.warning(
                "the database's write-ahead log is still being read; it keeps old pages "
                "until the next scrub"
            )
        return emptied

    def dispose(self) -> None:
        self.engine.dispose()


def _checkpoint(cur: Any) -> bool:
    """``wal_checkpoint(TRUNCATE)`` on ``cur``, waiting a bounded time; True if the log is empty."""
    cur.execute(f"PRAGMA busy_timeout={SCRUB_WAIT_SECONDS * 1000}")
    try:
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = cur.fetchone()  # (busy, frames in the log, frames checkpointed)
    finally:
        cur.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_SECONDS * 1000}")
        cur.close()
    return row is not None and not row[0]


def cas_update(session: Session, statement: Update) -> int:
    """Run a conditional UPDATE (a compare-and-set); how many rows it changed.

    The condition is the expected current state (``WHERE id = ? AND state = 'pending'``): of
    two requests racing to change a row, exactly one sees 1, so exactly one acts.
    """
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # an UPDATE always answers with a cursor
    return int(result.rowcount)
