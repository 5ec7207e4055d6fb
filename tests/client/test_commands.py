"""Client commands without a server: profiles from stdin, one-line errors, key files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_profile_set_reads_the_token_from_stdin(runner: CliRunner, tmp_path: Path) -> None:
    done = runner.invoke(
        main,
        ["profile", "set", "lab", "--url", "http://gw.example", "--no-check"],
        input="gw_from_stdin\n",
    )
    assert done.exit_code == 0, done.output
    path = tmp_path / "config" / "gateway" / "profiles.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "gw_from_stdin" in path.read_text()
    listed = runner.invoke(main, ["profile", "list"])
    assert "lab\thttp://gw.example" in listed.output and "gw_from_stdin" not in listed.output


def test_no_gateway_configured_is_one_line_and_fails(runner: CliRunner) -> None:
    done = runner.invoke(main, ["whoami"])
    assert done.exit_code == 1
    assert done.output.startswith("gateway: error: no gateway configured")
    assert done.output.count("\n") == 1 and "Traceback" not in done.output


def test_unreachable_gateway_is_one_line_and_fails(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GATEWAY_TOKEN", "gw_x")
    done = runner.invoke(main, ["artifacts"])
    assert done.exit_code == 1
    assert done.output.startswith("gateway: error: cannot reach the gateway at http://127.0.0.1:9")


def test_keygen_without_registering_writes_private_files(runner: CliRunner, tmp_path: Path) -> None:
    age_key, sign_key = tmp_path / "id.agekey", tmp_path / "lab.key"
    done = runner.invoke(main, ["keygen", "--type", "age", "--no-register", "-o", str(age_key)])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0].startswith("age1")
    assert stat.S_IMODE(age_key.stat().st_mode) == 0o600
    assert "AGE-SECRET-KEY-1" in age_key.read_text()
    done = runner.invoke(
        main, ["keygen", "--type", "signing", "--no-register", "-o", str(sign_key)]
    )
    assert done.exit_code == 0 and stat.S_IMODE(sign_key.stat().st_mode) == 0o600
    again = runner.invoke(main, ["keygen", "--type", "age", "--no-register", "-o", str(age_key)])
    assert again.exit_code == 1 and "exists; not overwriting a key" in again.output
