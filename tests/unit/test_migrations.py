"""The Alembic migrations build exactly the schema the models describe."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db import Base, make_engine
from gateway.migrations import upgrade


def test_migrations_match_the_models(tmp_path: Path) -> None:
    import gateway.audit.store  # noqa: F401 - registers the audit tables
    import gateway.models  # noqa: F401

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    upgrade(url)  # idempotent
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
