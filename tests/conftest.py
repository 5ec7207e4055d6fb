"""Shared fixtures: a configured gateway in a temp dir, its app and client, seeded orgs.

Every gateway these fixtures build runs once on SQLite and once on PostgreSQL: ``db_url``
is parametrised over both, and ``rt`` puts the gateway on it whatever ``config`` says,
so a suite that overrides ``config`` is parametrised too. The PostgreSQL cases use one
throwaway cluster per test session (:mod:`tests.pg`) and a fresh database per test,
copied from a template migrated once. Where PostgreSQL is not installed they skip with
the reason; in CI (``GATEWAY_REQUIRE_VECTORS=1``) they fail. ``-m "not postgresql"``
leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.runtime import Runtime
from tests import pg
from tests.tools import missing

MIB = 1 << 20
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: runs on a throwaway PostgreSQL cluster (tests/pg.py)"
    )


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """The session's PostgreSQL cluster, started on first use and removed at the end."""
    try:
        cluster = pg.start_cluster()
    except pg.ClusterUnavailable as exc:
        missing(f"no PostgreSQL for these tests: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of this test's own, dropped afterwards."""
    from gateway.migrations import upgrade

    with pg_cluster.database(pg_cluster.template(upgrade)) as url:
        yield url


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of this test's gateway: a SQLite file, or a PostgreSQL database."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'gateway.db'}"


def make_config(root: Path, **overrides: object) -> Config:
    """A configuration that keeps everything under ``root``, with small parts for tests."""
    base = Config()
    settings = {
        "database.url": f"sqlite:///{root / 'gateway.db'}",
        "storage.root": str(root / "objects"),
        "keys.dir": str(root / "keys"),
        "audit.archive_dir": str(root / "audit"),
        "audit.origin": "test.gateway/audit",
        "uploads.min_part_size_mib": 5,
        "uploads.default_part_size_mib": 5,
        "sweeper.interval_seconds": 0,
    }
    settings.update({k: v for k, v in overrides.items()})
    return base.replace(**settings)


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Config:
    return make_config(tmp_path, **{"database.url": db_url})


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def rt(config: Config, clock: FrozenClock, db_url: str) -> Iterator[Runtime]:
    """The gateway of ``config``, initialised, on ``db_url``."""
    from gateway import bootstrap

    config = config.replace(**{"database.url": db_url})
    list(bootstrap.init(config))
    runtime = Runtime(config, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def app(rt: Runtime) -> Flask:
    return create_app(rt.config, runtime=rt)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Principals:
    """Bearer tokens of the seeded principals, by short name."""

    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


SEED = [
    # (short name, org, org kind, role)
    ("lab", "lab-a", "lab", "lab"),
    ("lab_b", "lab-b", "lab", "lab"),
    ("eval", "agency-a", "agency", "evaluator"),
    ("eval2", "agency-a", "agency", "evaluator"),
    ("eval_b", "agency-b", "agency", "evaluator"),
    ("auditor", "oversight", "oversight", "auditor"),
    ("admin", "operator", "operator", "admin"),
]


@pytest.fixture
def principals(rt: Runtime) -> Principals:
    from gateway.services import identity

    tokens = {}
    with rt.db.session() as session:
        for short, org, kind, role in SEED:
            identity.ensure_org(session, org, kind, rt.now())
            token, _ = identity.create_token(
                session, org=org, role=role, name=short.replace("_", "-"), ttl_days=30, now=rt.now()
            )
            tokens[short] = token
    return Principals(tokens)
