"""``gateway witness serve``: its limits are checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.audit import cosignature
from gateway.witness.cli import witness
from tests.witness.conftest import TestLog


@pytest.fixture
def ready(tmp_path: Path) -> list[str]:
    cosignature.create_cosigner_file(tmp_path / "w.key", "witness.test/w1")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "logs").write_text(f"logs/v0\nvkey {TestLog().vkey}\n")
    return ["serve", "--key", str(tmp_path / "w.key"), "--state", str(tmp_path / "state")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-body", str(1 << 20)], "--max-body"),  # over half the state limit
        (["--request-timeout", "0"], "--request-timeout"),
        (["--io-timeout", "0"], "--io-timeout"),
    ],
)
def test_limits_out_of_range_are_usage_errors(
    ready: list[str], extra: list[str], message: str
) -> None:
    result = CliRunner().invoke(witness, [*ready, *extra])
    assert result.exit_code == 2 and message in result.output


def test_an_io_timeout_above_the_request_timeout_is_refused(ready: list[str]) -> None:
    result = CliRunner().invoke(witness, [*ready, "--io-timeout", "20", "--request-timeout", "10"])
    assert result.exit_code == 1
    assert result.output == "gateway: error: --io-timeout must be at most --request-timeout\n"


def test_a_log_origin_the_witness_cannot_sign_for_stops_it_at_start(
    ready: list[str], tmp_path: Path
) -> None:
    (tmp_path / "state" / "logs").write_text(
        f"logs/v0\nvkey {TestLog().vkey}\norigin {'o' * 300}\n"
    )
    result = CliRunner().invoke(witness, ready)
    assert result.exit_code == 1
    assert result.output.startswith("gateway: error: log origin 'ooo")
    assert "255 bytes" in result.output
