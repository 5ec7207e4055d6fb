"""Shared fixtures: a configured gateway in a temp dir, its app and client, seeded orgs."""

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

MIB = 1 << 20


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
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def rt(config: Config, clock: FrozenClock) -> Iterator[Runtime]:
    from gateway import bootstrap

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
