"""`gateway admin token create --ttl-days` is bounded by `tokens.max_ttl_days` (365).

A lifetime past the bound, or absurd (a hundred million days, more than a datetime holds),
is one `gateway: error:` line, and nothing is stored: no token, no principal, no entry.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from gateway import config as cfg
from gateway.cli import main
from gateway.models import Principal, Token
from gateway.runtime import Runtime
from tests.cli.test_dev_seed import _operator_env
from tests.conftest import Principals


def _create(rt: Runtime, days: str, **env: str) -> Result:
    args = ["admin", "token", "create", "--org", "lab-a", "--role", "lab", "--name", "ann"]
    return CliRunner(env=_operator_env(rt, **env)).invoke(main, [*args, "--ttl-days", days])


def _stored(rt: Runtime) -> tuple[int, int]:
    """Principals named ann, and audit entries, as the database holds them."""
    from gateway.audit import store

    with rt.db.session() as s:
        ann = s.scalar(select(func.count()).select_from(Principal).where(Principal.name == "ann"))
        return ann or 0, sum(1 for _ in store.iter_leaves(s))


@pytest.mark.parametrize("days", ["366", "100000000", str(10**30)])
def test_a_lifetime_past_the_bound_is_one_error_line_and_stores_nothing(
    rt: Runtime, principals: Principals, days: str
) -> None:
    before = _stored(rt)
    r = _create(rt, days)
    assert r.exit_code == 1 and r.stdout == "", r.output
    assert r.stderr == (
        f"gateway: error: a token's lifetime is at most 365 days (tokens.max_ttl_days), "
        f"not {days}\n"
    )
    assert _stored(rt) == before


def test_the_bound_is_a_setting_and_a_token_lives_as_long_as_asked(
    rt: Runtime, principals: Principals
) -> None:
    made = _create(rt, "365")
    assert made.exit_code == 0 and made.stdout.startswith("gw_"), made.output
    longer = _create(rt, "400", GATEWAY_TOKENS_MAX_TTL_DAYS="400")
    assert longer.exit_code == 0, longer.output
    with rt.db.session() as s:
        lives = [
            t.expires_at - t.created_at
            for t in s.scalars(
                select(Token)
                .join(Principal)
                .where(Principal.name == "ann")
                .order_by(Token.created_at)
            )
        ]
    assert lives == [timedelta(days=365), timedelta(days=400)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"GATEWAY_TOKENS_MAX_TTL_DAYS": "0"}, "tokens.max_ttl_days: must be between 1 and 3660"),
        ({"GATEWAY_TOKENS_MAX_TTL_DAYS": "36500"}, "tokens.max_ttl_days: must be between 1 and"),
        (
            {"GATEWAY_TOKENS_MAX_TTL_DAYS": "30"},
            "tokens.default_ttl_days: must be between 1 and tokens.max_ttl_days",
        ),
    ],
)
def test_the_bound_itself_is_bounded(settings: dict[str, str], message: str) -> None:
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.load(None, environ=settings)
