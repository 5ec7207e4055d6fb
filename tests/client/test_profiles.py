"""Profiles: where the client finds its gateway and token, and how it keeps them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.client import profiles
from gateway.client.profiles import ProfileError, resolve


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path / "home")}


def test_profiles_file_is_in_xdg_config_home_and_private(env: dict[str, str]) -> None:
    path = profiles.profiles_path(env)
    assert path == Path(env["XDG_CONFIG_HOME"]) / "gateway" / "profiles.toml"
    profiles.save(path, "lab", "https://gw.example/", "gw_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = resolve("lab", env)
    assert (found.url, found.token, found.name) == ("https://gw.example", "gw_secret", "lab")


def test_falls_back_to_home_config_without_xdg(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert profiles.profiles_path(env) == tmp_path / ".config" / "gateway" / "profiles.toml"


def test_values_with_quotes_and_backslashes_survive(env: dict[str, str]) -> None:
    path = profiles.profiles_path(env)
    profiles.save(path, "odd name", 'http://h/"x"\\y', 'tok"\\\n')
    found = resolve("odd name", env)
    assert found.url == 'http://h/"x"\\y' and found.token == 'tok"\\\n'


def test_resolution_order(env: dict[str, str]) -> None:
    path = profiles.profiles_path(env)
    profiles.save(path, "default", "http://default", "t-default")
    profiles.save(path, "named", "http://named", "t-named")
    assert resolve(None, env).url == "http://default"
    assert resolve(None, {**env, "GATEWAY_PROFILE": "named"}).url == "http://named"
    both = {
        **env,
        "GATEWAY_PROFILE": "named",
        "GATEWAY_URL": "http://env",
        "GATEWAY_TOKEN": "t-env",
    }
    assert (resolve(None, both).url, resolve(None, both).token) == ("http://env", "t-env")
    assert resolve("default", both).url == "http://default"


def test_missing_settings_are_reported(env: dict[str, str]) -> None:
    with pytest.raises(ProfileError, match="no gateway configured"):
        resolve(None, env)
    with pytest.raises(ProfileError, match="GATEWAY_TOKEN is not set"):
        resolve(None, {**env, "GATEWAY_URL": "http://x"})
    with pytest.raises(ProfileError, match="no profile named 'nope'"):
        resolve("nope", env)


def test_replacing_and_removing_keeps_the_others(env: dict[str, str]) -> None:
    path = profiles.profiles_path(env)
    profiles.save(path, "a", "http://a", "ta")
    profiles.save(path, "b", "http://b", "tb")
    profiles.save(path, "a", "http://a2", "ta2")
    assert resolve("a", env).url == "http://a2"
    assert profiles.remove(path, "a") is True
    assert profiles.remove(path, "a") is False
    assert resolve("b", env).token == "tb"


def test_token_never_in_repr(env: dict[str, str]) -> None:
    path = profiles.profiles_path(env)
    profiles.save(path, "p", "http://p", "gw_very_secret")
    assert "gw_very_secret" not in repr(resolve("p", env))


def test_broken_file_is_one_clear_error(env: dict[str, str]) -> None:
    path = profiles.profiles_path(env)
    path.parent.mkdir(parents=True)
    path.write_text("[profiles.x\nurl=")
    with pytest.raises(ProfileError, match="not a valid profiles file"):
        resolve("x", env)
