"""Shredding that shreds: after a withdrawal or an expiry, no file the gateway keeps holds
the custody key, in any form, nor a header that the key or a grantee opened.

Every file under the gateway's data directory (database, its ``-wal`` and ``-shm``, key
directory, object store, audit archive) is read byte by byte. On PostgreSQL the database
is the server's, outside that directory (the README says what its operator must do), and
the same scan covers everything the gateway itself keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.models import CustodyKey, Grant, Upload
from gateway.runtime import Runtime
from gateway.services.custody_keys import custody_identity
from gateway.sweeper import sweep_once
from tests.conftest import make_config
from tests.services.conftest import Evaluator, Shared

WINDOW_DAYS = 10


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Config:
    return make_config(
        tmp_path, **{"database.url": db_url, "access.review_window_days": WINDOW_DAYS}
    )


@dataclass(frozen=True)
class KeyMaterial:
    """What opens the artifact, as the gateway held it before the shred."""

    wrapped: bytes
    identity: bytes
    headers: list[bytes]

    def named(self) -> dict[str, bytes]:
        found = {"wrapped custody key": self.wrapped, "custody identity": self.identity}
        found.update({f"header {i}": h for i, h in enumerate(self.headers)})
        return found


def key_material(rt: Runtime, shared: Shared) -> KeyMaterial:
    with rt.db.session() as session:
        upload_id = shared.artifact["upload"]
        row = session.get(CustodyKey, upload_id)
        upload = session.get(Upload, upload_id)
        assert row is not None and upload is not None and upload.header_prefix
        identity = str(custody_identity(rt, session, upload_id)).encode()
        grants = session.scalars(
            select(Grant.header).where(Grant.artifact_id == shared.artifact["id"])
        )
        headers = [upload.header_prefix, *(h for h in grants if h)]
        return KeyMaterial(row.wrapped, identity, headers)


def holders(root: Path, material: KeyMaterial) -> list[str]:
    """Every (file, secret) pair where a file under ``root`` still holds a secret."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [
            f"{path.relative_to(root)}: {name}"
            for name, secret in material.named().items()
            if secret in data
        ]
    return found


def on_sqlite(rt: Runtime) -> bool:
    return rt.db.engine.dialect.name == "sqlite"


def test_a_withdrawal_leaves_no_key_material_in_any_file(
    client: FlaskClient,
    lab: Any,
    shared: Shared,
    granted: dict,
    evaluator: Evaluator,
    rt: Runtime,
    tmp_path: Path,
) -> None:
    assert evaluator.content(shared.artifact).status_code == 200
    material = key_material(rt, shared)
    assert len(material.headers) == 2  # the stored header and the grant's
    if on_sqlite(rt):  # the scan sees the database's files: the key is there before
        assert any("wrapped custody key" in h for h in holders(tmp_path, material))
    r = client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
    assert r.status_code == 204, r.get_json()
    assert holders(tmp_path, material) == []


def test_an_expiry_leaves_no_key_material_in_any_file(
    shared: Shared, granted: dict, rt: Runtime, clock: FrozenClock, tmp_path: Path
) -> None:
    material = key_material(rt, shared)
    clock.advance(days=WINDOW_DAYS)
    assert sweep_once(rt)["artifacts_expired"] == 1
    assert holders(tmp_path, material) == []
