"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway import schema
from gateway.db import make_engine
from gateway.migrations import upgrade
from tests.conftest import DATABASES


@pytest.fixture(params=DATABASES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "postgresql":
        with request.getfixturevalue("pg_cluster").database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'm.db'}"


def test_migrations_match_the_models(empty_url: str) -> None:
    url = empty_url
    upgrade(url)
    upgrade(url)  # idempotent
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    engine.dispose()
    assert diff == []


def test_artifacts_stored_before_the_shares_table_are_shared_after_it(empty_url: str) -> None:
    """0002 fills artifact_shares from the share_with of every artifact already stored."""
    from datetime import datetime

    from sqlalchemy import insert, select

    from gateway.models import Artifact, ArtifactShare, Org, Principal, Upload

    url = empty_url
    upgrade(url, "0001")
    engine = make_engine(url)
    now = datetime(2026, 11, 26)
    with engine.begin() as conn:
        for name, kind in (("lab-a", "lab"), ("agency-a", "agency"), ("agency-b", "agency")):
            conn.execute(insert(Org.__table__).values(name=name, kind=kind, created_at=now))
        conn.execute(
            insert(Principal.__table__).values(
                id="prn_1", name="alice", org="lab-a", role="lab", created_at=now
            )
        )
        for n, share_with in ((1, ["agency-a", "agency-b"]), (2, ["agency-b"])):
            common = {"org": "lab-a", "name": f"m{n}", "kind": "weights", "share_with": share_with}
            conn.execute(
                insert(Upload.__table__).values(
                    id=f"up_{n}",
                    principal_id="prn_1",
                    part_size=1,
                    max_parts=1,
                    recipient="age1",
                    state="completed",
                    object_key=f"artifacts/up_{n}.age",
                    store_handle="",
                    created_at=now,
                    expires_at=now,
                    **common,
                )
            )
            conn.execute(
                insert(Artifact.__table__).values(
                    id=f"art_{n}",
                    upload_id=f"up_{n}",
                    size=1,
                    header_size=1,
                    object_key=f"artifacts/up_{n}.age",
                    state="available",
                    submitted_at=now,
                    review_ends_at=now,
                    manifest={},
                    signature="",
                    signing_key="",
                    **common,
                )
            )
    upgrade(url)
    with engine.connect() as conn:
        shares = set(conn.execute(select(ArtifactShare.artifact_id, ArtifactShare.org)).all())
    engine.dispose()
    assert shares == {("art_1", "agency-a"), ("art_1", "agency-b"), ("art_2", "agency-b")}
