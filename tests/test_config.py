from pathlib import Path

import pytest

from gateway import config as cfg


def test_defaults_match_the_documented_file() -> None:
    """config/gateway.toml documents every setting with its default; its paths, relative to
    config/, are the defaults' paths relative to the checkout."""
    root = Path(__file__).parents[1]
    documented = cfg.load(root / "config" / "gateway.toml", environ={})
    defaults = cfg.Config(source=documented.source)
    resolved = {
        "database.url": f"sqlite:///{root / 'var' / 'gateway.db'}",
        "storage.root": str(root / "var" / "objects"),
        "keys.dir": str(root / "keys"),
        "audit.archive_dir": str(root / "var" / "audit"),
    }
    assert documented.replace() == defaults.replace(**resolved)
    import tomllib

    text = tomllib.loads((Path(__file__).parents[1] / "config" / "gateway.toml").read_text())
    defaults = cfg.Config()
    for section in (
        "server",
        "database",
        "storage",
        "keys",
        "uploads",
        "access",
        "audit",
        "tokens",
        "sweeper",
    ):
        assert set(text[section]) == set(vars(getattr(defaults, section))), section


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[server]\nport = 9000\n[storage]\nbackend = "local"\n')
    c = cfg.load(path, environ={"GATEWAY_SERVER_PORT": "9100", "GATEWAY_UPLOADS_MAX_PARTS": "500"})
    assert c.server.port == 9100
    assert c.uploads.max_parts == 500
    assert c.source == str(path)


def test_gateway_config_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[audit]\norigin = "example.org/log"\n')
    assert cfg.load(environ={"GATEWAY_CONFIG": str(path)}).audit.origin == "example.org/log"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[server]\nport = "x"\n', {}, "setting server.port: expected an integer"),
        ("", {"GATEWAY_SERVER_PORT": "70000"}, "setting server.port: must be between 1 and 65535"),
        ('[storage]\nbackend = "ftp"\n', {}, "setting storage.backend"),
        ("[server]\nprot = 1\n", {}, "setting server.prot: unknown setting"),
        ("[nonsense]\na = 1\n", {}, "setting [nonsense]: unknown section"),
        ("", {"GATEWAY_ACCESS_REVIEW_WINDOW_DAYS": "45"}, "setting access.review_window_days"),
        ("[server\n", {}, "config file"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "g.toml"
    path.write_text(toml)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path, environ=env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="not found"):
        cfg.load(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_SERVER_HEADER_TIMEOUT_SECONDS": "0"}, "server.header_timeout_seconds"),
        ({"GATEWAY_SERVER_IDLE_TIMEOUT_SECONDS": "-1"}, "server.idle_timeout_seconds"),
        ({"GATEWAY_SERVER_BODY_TIMEOUT_SECONDS": "0"}, "server.body_timeout_seconds"),
        ({"GATEWAY_SERVER_SEND_TIMEOUT_SECONDS": "0"}, "server.send_timeout_seconds"),
        ({"GATEWAY_SERVER_MIN_RATE_GRACE_SECONDS": "0"}, "server.min_rate_grace_seconds"),
        ({"GATEWAY_SERVER_MIN_RATE_BYTES_PER_SECOND": "-1"}, "server.min_rate_bytes_per_second"),
        ({"GATEWAY_SERVER_MAX_JSON_BYTES": "100"}, "server.max_json_bytes"),
        ({"GATEWAY_SERVER_MAX_HEADER_BYTES": str(2 << 20)}, "server.max_header_bytes"),
        ({"GATEWAY_SERVER_MAX_BUFFERED_BYTES": "4096"}, "server.max_buffered_bytes"),
        ({"GATEWAY_SERVER_MAX_CONNECTIONS": "16"}, "server.max_connections"),
        ({"GATEWAY_SERVER_UPLOAD_THREADS": "0"}, "server.upload_threads"),
        ({"GATEWAY_SERVER_DOWNLOAD_THREADS": "0"}, "server.download_threads"),
        ({"GATEWAY_SERVER_TIMEOUT": "0"}, "server.timeout"),
    ],
)
def test_edge_bounds_are_validated(env: dict[str, str], message: str) -> None:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(environ=env)
    assert str(info.value).startswith(f"setting {message}")


def test_edge_bounds_can_be_set() -> None:
    c = cfg.load(
        environ={
            "GATEWAY_CONFIG": "",
            "GATEWAY_SERVER_HEADER_TIMEOUT_SECONDS": "2",
            "GATEWAY_SERVER_MAX_JSON_BYTES": "4096",
            "GATEWAY_SERVER_MIN_RATE_BYTES_PER_SECOND": "0",
        }
    )
    assert (c.server.header_timeout_seconds, c.server.max_json_bytes) == (2, 4096)
    assert c.server.min_rate_bytes_per_second == 0
