"""Operator commands: found configuration from any directory, and one line for every bad setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway import cli
from gateway import config as cfg

CONFIG = """[database]
url = "sqlite:///../var/gateway.db"
[storage]
root = "../var/objects"
[keys]
dir = "../keys"
[audit]
archive_dir = "../var/audit"
origin = "setup.test/audit"
"""


@pytest.fixture(autouse=True)
def _no_gateway_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def install(tmp_path: Path) -> Path:
    """A gateway installed under ``tmp_path/gw``, its configuration in ``gw/config/``."""
    path = tmp_path / "gw" / "config" / "gateway.toml"
    path.parent.mkdir(parents=True)
    path.write_text(CONFIG)
    return path


def gateway(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), env=env)


def test_operator_commands_find_their_configuration_from_any_directory(
    install: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(install.parent.parent)
    assert gateway("init").exit_code == 0  # ./config/gateway.toml, found from the install
    monkeypatch.chdir(elsewhere)
    made = gateway(
        "--config", str(install), "admin", "org", "create", "agency2", "--kind", "agency"
    )
    assert made.exit_code == 0, made.output
    swept = gateway("sweep", GATEWAY_CONFIG=str(install))
    assert swept.exit_code == 0, swept.output
    assert (install.parent.parent / "var" / "gateway.db").is_file()
    assert sorted(p.name for p in elsewhere.iterdir()) == [], "nothing is made where it runs"


def test_verbose_says_which_configuration_it_read(install: Path) -> None:
    done = gateway("-v", "--config", str(install), "init")
    assert done.exit_code == 0, done.output
    assert f"gateway: configuration {install.resolve()}" in done.stderr


def test_outside_any_gateway_a_command_creates_nothing_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = gateway("admin", "org", "create", "agency2", "--kind", "agency")
    assert done.exit_code == 1 and "Traceback" not in done.output
    lines = done.stderr.splitlines()
    assert lines[0].startswith("gateway: no configuration file (looked for ./config/gateway.toml")
    assert lines[1] == (
        f"gateway: error: there is no gateway database at {tmp_path / 'var' / 'gateway.db'} "
        "(its path is from the built-in defaults)"
    )
    assert lines[2].startswith("gateway: hint: point --config")
    assert list(tmp_path.iterdir()) == [], "no empty database was created here"


def test_unknown_gateway_variables_stop_start_up_naming_them(install: Path) -> None:
    done = gateway("--config", str(install), "init", GATEWAY_SERVR_PORT="9")
    assert done.exit_code == 1
    assert done.stderr == (
        "gateway: error: environment variable GATEWAY_SERVR_PORT: neither a setting "
        "(GATEWAY_<SECTION>_<KEY>) nor one of the gateway's own variables "
        "(did you mean GATEWAY_SERVER_PORT?)\n"
    )
    ok = gateway("--config", str(install), "init", GATEWAY_URL="http://x", GATEWAY_TEST_X="1")
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_DATABASE_URL", "bogus", "setting database.url: must be a database URL"),
        ("GATEWAY_SERVER_LOG_LEVEL", "loud", "setting server.log_level: must be one of debug"),
        (
            "GATEWAY_ACCESS_MAX_GRANT_HOURS",
            "-1",
            "setting access.max_grant_hours: must be at least 1",
        ),
        ("GATEWAY_SERVER_PORT", "abc", "setting server.port: expected an integer, got 'abc'"),
    ],
)
def test_a_bad_setting_in_the_environment_is_one_line_naming_the_variable(
    install: Path, variable: str, value: str, message: str
) -> None:
    for command in (["init"], ["serve"], ["sweep"]):
        done = gateway("--config", str(install), *command, **{variable: value})
        assert done.exit_code == 1 and done.output.count("\n") == 1, done.output
        assert done.stderr.startswith(f"gateway: error: {message}")
        assert done.stderr.endswith(f"(from {variable})\n")


def test_serve_does_not_start_without_its_keys(install: Path) -> None:
    assert gateway("--config", str(install), "init").exit_code == 0
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(install), "serve", "--port", "9"],
        env={"GATEWAY_KEYS_DIR": "/nonexistent", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("gateway: error: not ready to serve (settings from ")
    assert "key file /nonexistent/audit-signing.key is missing" in done.stderr


def test_relative_paths_in_a_file_are_relative_to_it(install: Path) -> None:
    loaded = cfg.load(install, environ={})
    root = install.parent.parent
    assert loaded.database.url == f"sqlite:///{root / 'var' / 'gateway.db'}"
    assert loaded.storage.root == root / "var" / "objects"
    assert loaded.keys.dir == str(root / "keys")
    # a default path follows the file too; one from the environment is the shell's own
    bare = install.with_name("bare.toml")
    bare.write_text("")
    assert cfg.load(bare, environ={}).keys.dir == str(install.parent / "keys")
    assert cfg.load(bare, environ={"GATEWAY_KEYS_DIR": "k"}).keys.dir == "k"


def test_a_variable_the_configuration_names_for_the_pin_is_allowed() -> None:
    cfg.check_environment({"GATEWAY_HSM_PIN": "1234"}, frozenset({"GATEWAY_HSM_PIN"}))
    with pytest.raises(cfg.ConfigError, match="GATEWAY_HSM_PIN"):
        cfg.check_environment({"GATEWAY_HSM_PIN": "1234"})


def test_dev_seed_names_the_address_serve_listens_on(install: Path) -> None:
    assert gateway("--config", str(install), "init").exit_code == 0
    done = gateway("--config", str(install), "dev-seed", GATEWAY_SERVER_PORT="18181")
    assert done.exit_code == 0, done.output
    assert "gateway: hint: export GATEWAY_URL=http://127.0.0.1:18181 " in done.stderr
