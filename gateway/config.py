"""Configuration: one frozen dataclass per section, built once and carried on the app.

Sources, later ones winning: the defaults below, the TOML file (``--config PATH``, else
``$GATEWAY_CONFIG``, else ``config/gateway.toml`` when it exists), then environment
variables ``GATEWAY_<SECTION>_<KEY>``. A bad setting raises :class:`ConfigError`
naming it, so start-up stops with one clear line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("config/gateway.toml")


class ConfigError(Exception):
    """A setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 8
    timeout: int = 3600
    public_url: str = ""
    log_level: str = "info"


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///var/gateway.db"


@dataclass(frozen=True)
class StorageConfig:
    """The ``[storage]`` section; the object store and the audit archive are built from it.

    Optional settings are None when unset (in the TOML file or the environment, an empty
    string); ``policy_template`` None means the bucket policy packaged with the gateway.
    :class:`gateway.storage.StorageSettings` adds the one thing another section decides,
    where the local audit archive lives (``audit.archive_dir``).
    """

    backend: str = "local"
    root: Path = Path("var/objects")
    bucket: str = "gateway-artifacts"
    audit_bucket: str = "gateway-audit"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    gateway_principal_arn: str | None = None
    kms_key_id: str | None = None
    multipart_abort_days: int = 7
    audit_retention_days: int = 3650
    policy_template: Path | None = None

    def __post_init__(self) -> None:
        # Settings arrive as strings from TOML and the environment: make them what they say.
        for name in ("endpoint_url", "gateway_principal_arn", "kms_key_id"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        object.__setattr__(self, "root", Path(self.root))
        template = self.policy_template
        object.__setattr__(self, "policy_template", Path(template) if template else None)


@dataclass(frozen=True)
class KeysConfig:
    dir: str = "keys"


@dataclass(frozen=True)
class UploadsConfig:
    default_part_size_mib: int = 64
    min_part_size_mib: int = 8
    max_parts: int = 10000
    open_ttl_hours: int = 72
    max_header_bytes: int = 65536
    # A completion claimed this long ago and not finished is stale: a retry of the same
    # completion, or the sweeper, may take it over (finish it, or return the upload to open).
    completing_timeout_seconds: int = 300


@dataclass(frozen=True)
class AccessConfig:
    review_window_days: int = 30
    default_grant_hours: int = 72
    max_grant_hours: int = 720
    download_url_ttl_seconds: int = 900
    # A transfer re-checks its grant and artifact after this many bytes or seconds,
    # whichever comes first, and stops when either has ended.
    recheck_bytes: int = 4 << 20
    recheck_seconds: int = 5
    # S3 presigned URLs bypass the gateway (no re-check, no log of their use): off unless
    # asked for, and then valid for at most recheck_seconds.
    presigned_urls: bool = False


@dataclass(frozen=True)
class AuditConfig:
    origin: str = "gateway.local/audit"
    anchor_every_entries: int = 1000
    anchor_every_minutes: int = 60
    archive_dir: str = "var/audit"


@dataclass(frozen=True)
class TokensConfig:
    default_ttl_days: int = 90


@dataclass(frozen=True)
class SweeperConfig:
    interval_seconds: int = 60


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    sweeper: SweeperConfig = field(default_factory=SweeperConfig)
    source: str = "defaults"

    @property
    def keys_dir(self) -> Path:
        return Path(self.keys.dir)

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections or single settings (``"section.key"``) replaced."""
        return _with(self, sections)


_SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "source"}


def _coerce(name: str, raw: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"setting {name}: expected true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"setting {name}: expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name}: expected an integer, got {raw!r}") from None
    # A storage path or optional setting, given again as it was built (Config.replace).
    if isinstance(raw, os.PathLike):
        return os.fspath(raw)
    if raw is None and default is None:
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"setting {name}: expected a string, got {raw!r}")
    return raw


def _build(values: Mapping[str, Mapping[str, Any]], source: str) -> Config:
    sections: dict[str, Any] = {}
    for sname, sfield in _SECTIONS.items():
        cls = sfield.default_factory()  # type: ignore[operator]
        given = dict(values.get(sname, {}))
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in given:
                kwargs[f.name] = _coerce(
                    f"{sname}.{f.name}", given.pop(f.name), getattr(cls, f.name)
                )
        if given:
            raise ConfigError(f"setting {sname}.{sorted(given)[0]}: unknown setting")
        sections[sname] = dataclasses.replace(cls, **kwargs)
    unknown = set(values) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"setting [{sorted(unknown)[0]}]: unknown section")
    config = Config(**sections, source=source)
    validate(config)
    return config


def _with(config: Config, changes: Mapping[str, Any]) -> Config:
    values: dict[str, dict[str, Any]] = {
        name: dataclasses.asdict(getattr(config, name)) for name in _SECTIONS
    }
    for key, value in changes.items():
        if "." in key:
            section, setting = key.split(".", 1)
            values.setdefault(section, {})[setting] = value
        elif dataclasses.is_dataclass(value):
            values[key] = dataclasses.asdict(value)  # type: ignore[arg-type]
        else:
            values[key] = dict(value)
    return _build(values, config.source)


def validate(config: Config) -> None:
    """Range checks that a type alone cannot express."""
    checks: list[tuple[bool, str]] = [
        (1 <= config.server.port <= 65535, "server.port: must be between 1 and 65535"),
        (config.server.workers >= 1, "server.workers: must be at least 1"),
        (config.server.threads >= 1, "server.threads: must be at least 1"),
        (config.storage.backend in ("local", "s3"), 'storage.backend: must be "local" or "s3"'),
        (
            config.uploads.min_part_size_mib >= 5,
            "uploads.min_part_size_mib: must be at least 5 (S3's minimum)",
        ),
        (
            config.uploads.default_part_size_mib >= config.uploads.min_part_size_mib,
            "uploads.default_part_size_mib: must be at least uploads.min_part_size_mib",
        ),
        (
            config.uploads.default_part_size_mib <= 5120,
            "uploads.default_part_size_mib: must be at most 5120 (S3's 5 GiB part limit)",
        ),
        (1 <= config.uploads.max_parts <= 10000, "uploads.max_parts: must be between 1 and 10000"),
        (config.uploads.open_ttl_hours >= 1, "uploads.open_ttl_hours: must be at least 1"),
        (
            1024 <= config.uploads.max_header_bytes <= 1 << 20,
            "uploads.max_header_bytes: must be between 1024 and 1048576",
        ),
        (
            1 <= config.access.review_window_days <= 30,
            "access.review_window_days: must be between 1 and 30",
        ),
        (
            1 <= config.access.default_grant_hours <= config.access.max_grant_hours,
            "access.default_grant_hours: must be between 1 and access.max_grant_hours",
        ),
        (
            config.access.max_grant_hours <= 24 * 30,
            "access.max_grant_hours: must be at most 720 (the 30-day window)",
        ),
        (
            60 <= config.access.download_url_ttl_seconds <= 900,
            "access.download_url_ttl_seconds: must be between 60 and 900",
        ),
        (
            64 << 10 <= config.access.recheck_bytes <= 1 << 30,
            "access.recheck_bytes: must be between 65536 and 1073741824",
        ),
        (
            1 <= config.access.recheck_seconds <= 300,
            "access.recheck_seconds: must be between 1 and 300",
        ),
        (
            1 <= config.uploads.completing_timeout_seconds <= 86400,
            "uploads.completing_timeout_seconds: must be between 1 and 86400",
        ),
        (
            bool(config.audit.origin)
            and "\n" not in config.audit.origin
            and " " not in config.audit.origin,
            "audit.origin: must be a non-empty name without spaces or newlines",
        ),
        (
            config.audit.anchor_every_entries >= 0,
            "audit.anchor_every_entries: must not be negative",
        ),
        (
            config.audit.anchor_every_minutes >= 0,
            "audit.anchor_every_minutes: must not be negative",
        ),
        (config.tokens.default_ttl_days >= 1, "tokens.default_ttl_days: must be at least 1"),
        (config.sweeper.interval_seconds >= 0, "sweeper.interval_seconds: must not be negative"),
        (bool(config.database.url), "database.url: must not be empty"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"setting {message}")


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``GATEWAY_<SECTION>_<KEY>`` variables as nested settings (``GATEWAY_CONFIG`` excluded)."""
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith("GATEWAY_") or name == "GATEWAY_CONFIG":
            continue
        rest = name[len("GATEWAY_") :].lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                out.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return out


def load(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the configuration from ``path`` (or the default places) and the environment."""
    environ = os.environ if environ is None else environ
    chosen = (
        Path(path)
        if path
        else Path(environ["GATEWAY_CONFIG"])
        if environ.get("GATEWAY_CONFIG")
        else None
    )
    values: dict[str, dict[str, Any]] = {}
    source = "defaults"
    if chosen is not None and not chosen.is_file():
        raise ConfigError(f"config file {chosen}: not found")
    target = chosen or (DEFAULT_PATH if DEFAULT_PATH.is_file() else None)
    if target is not None:
        try:
            with open(target, "rb") as fh:
                parsed = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {target}: {exc}") from None
        for section, settings in parsed.items():
            if not isinstance(settings, dict):
                raise ConfigError(f"setting {section}: expected a [{section}] table")
            values[section] = dict(settings)
        source = str(target)
    for section, settings in env_overrides(environ).items():
        values.setdefault(section, {}).update(settings)
    return _build(values, source)
