"""`gateway audit verify --policy --max-age` against a gateway whose two witnesses cosigned:
the verdict says when both cosigned, a recent checkpoint passes, and a bound it exceeds
refuses it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_witnessed_story import _client, witnessed  # noqa: F401 - the fixture
from tests.witness.conftest import WitnessProcess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_the_quorums_cosignature_dates_the_checkpoint(
    witnessed: tuple[Server, list[WitnessProcess]],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    server, _ = witnessed
    published = server.gateway("audit", "publish", "--force")
    assert "published checkpoint-" in published.stderr, published.stderr
    policy = tmp_path / "gateway.policy"
    policy.write_text(server.gateway("audit", "policy").stdout)
    fresh = _client(
        server, "auditor", "audit", "verify", "--policy", str(policy), "--max-age", "1h"
    )
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "; cosigned by " in fresh.stdout and "w1" in fresh.stdout, fresh.stdout
    time.sleep(2.1)
    stale = _client(
        server, "auditor", "audit", "verify", "--policy", str(policy), "--max-age", "1s"
    )
    assert stale.returncode == 1
    assert stale.stdout.startswith("FAILED: the checkpoint is older than --max-age 1s: cosigned by")
