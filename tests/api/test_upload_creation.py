"""Upload creation in one transaction: quotas counted under a lock, nothing left if it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.custody import CustodyUnavailable
from gateway.models import CustodyKey, Upload
from gateway.runtime import Runtime
from gateway.services import quotas
from tests.api.conftest import Lab
from tests.conftest import make_config

OPEN = 2
BODY = {"name": "w", "kind": "weights", "share_with": ["agency-a"]}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, **{"quotas.open_uploads_per_org": OPEN, "quotas.min_free_mib": 0})


def test_creations_that_all_passed_the_early_check_stop_at_the_quota(
    lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Racing requests all pass the early read at the same moment; the transaction counts again.
    monkeypatch.setattr(quotas, "check_create", lambda *_args: None)
    answers = [lab.client.post("/v1/uploads", json=BODY, headers=lab.auth) for _ in range(OPEN + 2)]
    assert [r.status_code for r in answers] == [201] * OPEN + [507, 507]
    assert answers[-1].get_json()["quota"] == "open_uploads"
    with rt.db.session() as session:
        assert session.query(Upload).count() == OPEN
        assert session.query(CustodyKey).count() == OPEN
    key_dir = rt.config.custody.key_dir(rt.keys_dir)
    assert len(list(key_dir.glob("*.key"))) == OPEN  # no key made for a refused creation


def test_a_creation_that_fails_leaves_no_staging_no_key_and_no_row(
    lab: Lab, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_args: object) -> bytes:
        raise CustodyUnavailable("the token is not there")

    monkeypatch.setattr(rt.custody, "wrap", unavailable)  # after the key and the staging exist
    r = lab.client.post("/v1/uploads", json=BODY, headers=lab.auth)
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert "custody backend is not available" in r.get_json()["detail"]
    staging = Path(rt.config.storage.root) / "staging"
    assert not staging.exists() or not list(staging.iterdir())
    key_dir = rt.config.custody.key_dir(rt.keys_dir)
    assert not key_dir.exists() or not [p for p in key_dir.iterdir() if p.suffix == ".key"]
    with rt.db.session() as session:
        assert session.query(Upload).count() == 0
