"""Audit fixtures: a fresh metadata database with the audit tables, a signer, an entry maker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

import gateway.audit.store  # noqa: F401 - registers the audit tables
from gateway.audit import note, store
from gateway.db import Database
from tests.conftest import DATABASES

ORIGIN = "test.gateway/audit"
T0 = datetime(2026, 11, 26, 12, 0, 0)


def make_db(url: str = "sqlite://") -> Database:
    db = Database(url)
    db.create_all()
    return db


Logs = Callable[..., AbstractContextManager[str]]
"""``logs(shared=False)``: the URL of a new empty log; ``shared`` if other engines open it too."""


@pytest.fixture(params=DATABASES)
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> Logs:
    if request.param == "postgresql":
        from gateway.migrations import upgrade

        cluster = request.getfixturevalue("pg_cluster")
        template = cluster.template(upgrade)
        return lambda shared=False: cluster.database(template)

    @contextmanager
    def sqlite(shared: bool = False) -> Iterator[str]:
        url = f"sqlite:///{tmp_path / f'log-{uuid.uuid4().hex[:8]}.db'}" if shared else "sqlite://"
        if shared:
            make_db(url).dispose()
        yield url

    return sqlite


@contextmanager
def opened(url: str) -> Iterator[Database]:
    """The log at ``url``, its tables made if it is new (a SQLite memory database is)."""
    database = make_db(url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db() -> Iterator[Database]:
    """An in-memory database (one connection per thread); tests of concurrency use a file."""
    database = make_db()
    yield database
    database.dispose()


@pytest.fixture
def signer() -> note.Signer:
    return note.Signer.generate(ORIGIN)


def add_entry(session: Session, i: int, **overrides: Any) -> None:
    """Append a plausible entry; ``i`` varies its content (readers integrate it)."""
    fields: dict[str, Any] = {
        "time": T0 + timedelta(seconds=i),
        "actor": f"prn_{i % 3}",
        "org": ("lab-a", "agency-a", "oversight")[i % 3],
        "role": ("lab", "evaluator", "auditor")[i % 3],
        "action": ("upload.create", "artifact.read", "key.release", "content.download")[i % 4],
        "artifact": f"art_{i % 5}",
        "subject_org": ("lab-a", "lab-b")[i % 2],
        "request_id": f"req-{i}",
        "ip": "127.0.0.1",
        "details": {"n": i},
    }
    fields.update(overrides)
    store.append(session, **fields)


def fill(db: Database, n: int, per_tx: int = 50) -> None:
    done = 0
    while done < n:
        with db.session() as s:
            for i in range(done, min(n, done + per_tx)):
                add_entry(s, i)
        done = min(n, done + per_tx)


AddEntry = Callable[..., None]
