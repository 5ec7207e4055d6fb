"""What the gateway's files let another local user read, and what a deletion leaves in them.

The database files are 0600 in 0700 directories however the process's umask is set;
every SQLite connection zeroes what it deletes, whatever its build's default; a scrub
empties the write-ahead log, or says it could not.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway import bootstrap, db
from gateway.config import Config
from gateway.runtime import Runtime
from gateway.storage.archive import LocalAuditArchive
from gateway.storage.local import LocalStore
from tests.conftest import make_config

SECRET = b"AGE-SECRET-KEY-1" + b"Q" * 58


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask (022), under which new files are readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def holding(folder: Path, secret: bytes) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and secret in p.read_bytes())


def sqlite_db(path: Path) -> db.Database:
    database = db.Database(f"sqlite:///{path}")
    with database.session() as session:
        session.execute(text("CREATE TABLE secrets (value BLOB)"))
    return database


@pytest.mark.usefixtures("loose_umask")
def test_init_makes_the_database_0600_in_0700_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "db" / "gateway.db"
    config = make_config(tmp_path, **{"database.url": f"sqlite:///{path}"})
    list(bootstrap.init(config))
    with Runtime(config).db.session() as session:  # a connection open: the -wal and -shm exist
        session.execute(text("SELECT 1"))
        files = {p.name: mode(p) for p in path.parent.iterdir()}
    assert files == {"gateway.db": 0o600, "gateway.db-wal": 0o600, "gateway.db-shm": 0o600}
    assert mode(tmp_path / "var") == mode(path.parent) == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_the_other_data_directories_are_0700(config: Config, tmp_path: Path) -> None:
    list(bootstrap.init(config))
    for folder in ("keys", "objects", "objects/objects", "objects/staging", "audit"):
        assert mode(tmp_path / folder) == 0o700, folder


@pytest.mark.usefixtures("loose_umask")
def test_a_database_the_engine_creates_is_0600(tmp_path: Path) -> None:
    sqlite_db(tmp_path / "new.db").dispose()
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {"new.db": 0o600}


def test_init_tightens_the_files_of_an_older_gateway(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    config = make_config(tmp_path, **{"database.url": f"sqlite:///{path}"})
    list(bootstrap.init(config))
    os.chmod(path, 0o644)
    said = list(bootstrap.init(config))
    assert mode(path) == 0o600
    assert f"database file {path}: mode 0600 (was 0644)" in said


def test_every_connection_zeroes_what_it_deletes_whatever_the_build_default() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA secure_delete=OFF")  # the default of most builds (not Debian's)
    db._sqlite_pragmas(conn, None)
    assert conn.execute("PRAGMA secure_delete").fetchone() == (1,)


def test_a_scrub_leaves_no_deleted_row_in_any_file(tmp_path: Path) -> None:
    database = sqlite_db(tmp_path / "gateway.db")
    with database.session() as session:
        session.execute(text("INSERT INTO secrets VALUES (:v)"), {"v": SECRET})
    with database.session() as session:
        session.execute(text("DELETE FROM secrets"))
    assert holding(tmp_path, SECRET) == ["gateway.db-wal"]  # the old page image
    assert database.scrub() is True
    assert holding(tmp_path, SECRET) == []
    assert (tmp_path / "gateway.db-wal").stat().st_size == 0
    database.dispose()


def test_a_scrub_that_readers_hold_up_says_so_and_the_next_one_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(db, "SCRUB_WAIT_SECONDS", 0)
    database = sqlite_db(tmp_path / "gateway.db")
    with database.session() as session:
        session.execute(text("INSERT INTO secrets VALUES (:v)"), {"v": SECRET})
    reader = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM secrets").fetchall()  # holds a snapshot in the log
    with database.session() as session:
        session.execute(text("DELETE FROM secrets"))
    assert database.scrub() is False
    assert "still being read" in caplog.text
    assert holding(tmp_path, SECRET) != []
    reader.execute("COMMIT")
    reader.close()
    assert database.scrub() is True
    assert holding(tmp_path, SECRET) == []
    database.dispose()


def test_a_scrub_with_no_reader_succeeds_on_either_database(rt: Runtime) -> None:
    """On PostgreSQL there is nothing to do (README: shredding); on SQLite it runs."""
    assert rt.db.scrub() is True


@pytest.mark.usefixtures("loose_umask")
def test_the_local_store_and_archive_make_every_directory_0700(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a" / "store")
    store.begin_upload("org/artifact")
    LocalAuditArchive(tmp_path / "b" / "audit").publish("checkpoint-1", b"x")
    for folder in ("a", "a/store", "a/store/staging", "b", "b/audit"):
        assert mode(tmp_path / folder) == 0o700, folder
