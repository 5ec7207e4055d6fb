"""`gateway dev-seed` only on the embedded development configuration, one live token per role.

It prints live tokens, an admin's among them: on a configuration with another database,
object store, custody, witnesses or a public URL it refuses in one error line and seeds
nothing (``--force`` seeds anyway); run again, it revokes the demo principals' earlier
tokens, so old admin tokens in terminals and logs stop working.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from gateway import bootstrap
from gateway.cli import main
from gateway.errors import Unauthorized
from gateway.models import Org, Principal, Token
from gateway.runtime import Runtime
from gateway.services import identity


def _operator_env(rt: Runtime, **more: str) -> dict[str, str | None]:
    config = rt.config
    return {
        "GATEWAY_CONFIG": None,
        "GATEWAY_DATABASE_URL": config.database.url,
        "GATEWAY_KEYS_DIR": config.keys.dir,
        "GATEWAY_STORAGE_ROOT": str(config.storage.root),
        "GATEWAY_AUDIT_ARCHIVE_DIR": config.audit.archive_dir,
        "GATEWAY_AUDIT_ORIGIN": config.audit.origin,
        **more,
    }


def test_dev_seed_refuses_a_configuration_that_is_not_for_development(
    rt: Runtime, db_url: str
) -> None:
    env = _operator_env(rt, GATEWAY_SERVER_PUBLIC_URL="https://gateway.example")
    refused = CliRunner(env=env).invoke(main, ["dev-seed"])
    assert refused.exit_code == 1 and refused.stdout == "", refused.output
    error, hint = refused.stderr.splitlines()
    assert error.startswith(
        "gateway: error: dev-seed is for the embedded development configuration only: "
    )
    assert "server.public_url is set" in error
    assert ("database.url is postgresql, not sqlite" in error) == db_url.startswith("postgresql")
    assert hint.startswith("gateway: hint: ") and "--force" in hint
    with rt.db.session() as s:
        assert s.get(Org, "demo-lab") is None  # nothing seeded
    forced = CliRunner(env=env).invoke(main, ["dev-seed", "--force"])
    assert forced.exit_code == 0, forced.output
    assert [line.split()[0] for line in forced.stdout.splitlines()] == list(bootstrap.DEMO)


def _live_tokens(rt: Runtime, org: str, name: str) -> int:
    with rt.db.session() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Token)
                .join(Principal, Principal.id == Token.principal_id)
                .where(Principal.org == org, Principal.name == name, Token.revoked_at.is_(None))
            )
            or 0
        )


def test_dev_seed_again_revokes_the_earlier_tokens(rt: Runtime) -> None:
    first = bootstrap.dev_seed(rt)
    second = bootstrap.dev_seed(rt)
    for role, (org, name, token) in second.items():
        with pytest.raises(Unauthorized, match="revoked"):
            identity.authenticate(rt, first[role][2])
        assert identity.authenticate(rt, token).role == role
        assert _live_tokens(rt, org, name) == 1
