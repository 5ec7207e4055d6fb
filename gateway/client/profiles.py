"""Where the client finds its gateway: environment variables or named profiles.

Profiles live in ``$XDG_CONFIG_HOME/gateway/profiles.toml`` (``~/.config`` when the
variable is unset), a file only its owner may read (mode 0600), one table per profile::

    [profiles.lab]
    url = "https://gateway.example"
    token = "gw_..."
    ca_cert = "/etc/ssl/agency-ca.pem"   # optional: the CA that signed the gateway's certificate

Which settings a command uses, first match wins:

1. the profile named with ``--profile``;
2. ``GATEWAY_URL`` and ``GATEWAY_TOKEN``;
3. the profile named by ``GATEWAY_PROFILE``;
4. the profile called ``default``.

Which CA certificates the gateway's TLS certificate is checked against, first match wins:
``gateway --ca-cert FILE``, ``GATEWAY_CA_CERT``, the profile's ``ca_cert``; else requests'
own choice (``REQUESTS_CA_BUNDLE`` when set, else its bundle of public CAs).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.errors import GatewayError
from gateway.keyfiles import replace_secret

FILE_NAME = "profiles.toml"
DEFAULT_PROFILE = "default"
_TOKEN = re.compile(r"^gw_[A-Za-z0-9_-]{1,125}$")
_URL = re.compile(r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")


def check_url(url: str, where: str = "the URL") -> str:
    """``url`` without a trailing slash, if it is an http(s) address; else a clear error."""
    if not _URL.match(url):
        raise ProfileError(
            f"{where} {url!r} is not a gateway address: give it with its scheme, "
            "e.g. https://gateway.example or http://127.0.0.1:8080"
        )
    return url.rstrip("/")


def check_token(token: str) -> str:
    """``token``, if it has the form of a gateway bearer token (``gw_`` and URL-safe base64)."""
    if not _TOKEN.match(token):
        raise ProfileError("that is not a gateway token: tokens start with gw_")
    return token


class ProfileError(GatewayError):
    """The client has no usable gateway address or token."""

    status, slug, title = 400, "profile", "Profile"


def check_ca_cert(path: str, where: str) -> str:
    """``path`` made absolute, if it is a readable file of PEM certificates; else a clear error."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise ProfileError(f"{where} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ProfileError(f"{where} {path}: not a PEM certificate file")
    return str(file.resolve())


@dataclass(frozen=True)
class Profile:
    url: str
    token: str
    name: str | None = None
    ca_cert: str = ""  # the CA file the gateway's certificate is checked against; "" = default

    def __repr__(self) -> str:  # never print the token
        return f"Profile(name={self.name!r}, url={self.url!r}, token=<hidden>)"

    @property
    def verify(self) -> bool | str:
        """What requests checks the gateway's certificate with (its ``verify=``)."""
        return self.ca_cert or True


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The client's directory in the user's config directory (XDG base directories)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "gateway"


def profiles_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / FILE_NAME


def load_all(path: Path) -> dict[str, dict[str, str]]:
    """Every profile in ``path`` (an empty mapping when the file does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not a valid profiles file: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ProfileError(f"{path}: [profiles] must be a table")
    return {
        name: {k: str(v) for k, v in table.items()}
        for name, table in profiles.items()
        if isinstance(table, dict)
    }


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(name: str) -> str:
    if name and all(c.isalnum() or c in "-_" for c in name) and name.isascii():
        return name
    return _toml_string(name)


def render(profiles: Mapping[str, Mapping[str, str]]) -> str:
    lines = ["# gateway client profiles; keep this file private (mode 0600)", ""]
    for name in sorted(profiles):
        lines.append(f"[profiles.{_toml_key(name)}]")
        for key in sorted(profiles[name]):
            lines.append(f"{_toml_key(key)} = {_toml_string(profiles[name][key])}")
        lines.append("")
    return "\n".join(lines)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600)."""
    replace_secret(path, data)


def save(path: Path, name: str, url: str, token: str, ca_cert: str = "") -> None:
    """Add or replace profile ``name`` (``ca_cert``: an absolute path, or "" for none)."""
    if not name:
        raise ProfileError("a profile needs a name")
    profiles = load_all(path)
    profiles[name] = {"url": check_url(url), "token": token}
    if ca_cert:
        profiles[name]["ca_cert"] = ca_cert
    write_private(path, render(profiles).encode("utf-8"))


def remove(path: Path, name: str) -> bool:
    profiles = load_all(path)
    if name not in profiles:
        return False
    del profiles[name]
    write_private(path, render(profiles).encode("utf-8"))
    return True


def _from_file(path: Path, name: str, *, required: bool) -> Profile | None:
    table = load_all(path).get(name)
    if table is None:
        if required:
            raise ProfileError(f"no profile named {name!r} in {path}")
        return None
    url, token = table.get("url", ""), table.get("token", "")
    if not url or not token:
        raise ProfileError(f"profile {name!r} in {path} needs both url and token")
    ca_cert = table.get("ca_cert", "")
    if ca_cert:
        ca_cert = check_ca_cert(ca_cert, f"profile {name!r} has ca_cert")
    url = check_url(url, f"profile {name!r} has")
    return Profile(url=url, token=token, name=name, ca_cert=ca_cert)


def resolve(
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    ca_cert: str | None = None,
) -> Profile:
    """The gateway address, token and CA file a command uses (see the module's docstring).

    ``ca_cert`` is ``--ca-cert``'s value, which wins over every other setting of it.
    """
    env = os.environ if env is None else env
    found = _resolve(profile, env)
    if ca_cert:
        return replace(found, ca_cert=check_ca_cert(ca_cert, "--ca-cert"))
    if env.get("GATEWAY_CA_CERT"):
        return replace(found, ca_cert=check_ca_cert(env["GATEWAY_CA_CERT"], "GATEWAY_CA_CERT"))
    return found


def _resolve(profile: str | None, env: Mapping[str, str]) -> Profile:
    path = profiles_path(env)
    if profile:
        found = _from_file(path, profile, required=True)
        assert found is not None
        return found
    url, token = env.get("GATEWAY_URL", ""), env.get("GATEWAY_TOKEN", "")
    if url or token:
        if not (url and token):
            missing = "GATEWAY_TOKEN" if url else "GATEWAY_URL"
            raise ProfileError(f"{missing} is not set (GATEWAY_URL and GATEWAY_TOKEN go together)")
        return Profile(url=check_url(url, "GATEWAY_URL"), token=token)
    named = env.get("GATEWAY_PROFILE", "")
    if named:
        found = _from_file(path, named, required=True)
        assert found is not None
        return found
    found = _from_file(path, DEFAULT_PROFILE, required=False)
    if found is None:
        saved = sorted(load_all(path))
        if saved:
            raise ProfileError(
                f"no profile named {DEFAULT_PROFILE!r}: choose one of {', '.join(saved)} with "
                "--profile NAME or GATEWAY_PROFILE=NAME"
            )
        raise ProfileError(
            "no gateway configured: set GATEWAY_URL and GATEWAY_TOKEN, "
            "or run `gateway profile set NAME --url URL`"
        )
    return found
