"""The metadata database handle: one SQLAlchemy engine and session factory per app.

SQLite (WAL mode, durable commits, foreign keys on) is the embedded default. PostgreSQL
is for several instances: ``postgresql://`` URLs use the psycopg 3 driver. On both, the
guarantees the services rely on are the same:

- **Isolation.** SQLite takes its write lock at ``BEGIN`` (``BEGIN IMMEDIATE``), so
  writing transactions run one at a time. PostgreSQL runs at ``READ COMMITTED``, set
  on the engine whatever the server's default: each statement sees what was committed
  before it began. What must not race is serialised explicitly: the audit log's head
  row is locked (``SELECT ... FOR UPDATE``) by every integration of sequenced entries
  (:mod:`gateway.audit.store`; an append only inserts a pending row), and state
  changes are compare-and-set updates (:func:`cas_update`), which PostgreSQL re-checks against
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

SCRUB_WAIT_SECONDS = 5
"""The longest :meth:`Database.scrub` waits for readers of the write-ahead log to finish."""

FILE_MODE = 0o600
"""The mode of the SQLite database file (and so of its ``-wal`` and ``-shm`` files)."""

DIR_MODE = 0o700
"""The mode of a directory the gateway creates to hold its SQLite database."""

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
