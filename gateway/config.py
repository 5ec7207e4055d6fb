"""Configuration: one frozen dataclass per section, built once and carried on the app.

Sources, later ones winning: the defaults below, the TOML file, then environment
variables ``GATEWAY_<SECTION>_<KEY>``. The file is ``--config PATH``, else
``$GATEWAY_CONFIG``, else ``./config/gateway.toml``, else ``/etc/gateway/gateway.toml``
(:data:`SEARCHED`), else none: the defaults. Relative paths in a file, and the defaults'
relative paths when a file is used, are relative to the file's directory, so a command
finds the same gateway from any directory; relative paths in the environment, and with
no file at all, are relative to the current directory.

A bad setting raises :class:`ConfigError` naming it, so start-up stops with one clear
line; so does a ``GATEWAY_*`` environment variable that is neither a setting nor one of
:data:`OWN_VARIABLES` (a typo such as ``GATEWAY_SERVR_PORT`` is not ignored).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.custody.settings import CustodySettingError, CustodySettings

DEFAULT_PATH = Path("config/gateway.toml")
SYSTEM_PATH = Path("/etc/gateway/gateway.toml")
SEARCHED = (DEFAULT_PATH, SYSTEM_PATH)
"""Where a configuration file is looked for, in order, when none is named."""

# GATEWAY_* variables that are not settings: the configuration file's; the client's (its
# gateway, token, profile and keys); the custody PIN's default (custody.pkcs11_pin_env); the
# test suite's (and every GATEWAY_TEST_*).
OWN_VARIABLES = frozenset(
    f"GATEWAY_{name}"
    for name in ("CONFIG", "URL", "TOKEN", "PROFILE", "SIGNING_KEY", "IDENTITY", "AUDIT_KEY")
    + ("PKCS11_PIN", "TEST_VECTORS", "REQUIRE_VECTORS", "PG_BINDIR", "PG_USER")
)
TEST_PREFIX = "GATEWAY_TEST_"
# Settings that are paths: relative ones are resolved as the module's note says.
PATH_SETTINGS: tuple[str, ...] = ("storage.root", "storage.policy_template", "keys.dir")
PATH_SETTINGS += ("audit.archive_dir", "custody.local_key_dir", "custody.pkcs11_pin_file")
PATH_SETTINGS += ("audit.policy_file",)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?):///(.*)$")


class ConfigError(Exception):
    """A setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 8
    upload_threads: int = 4
    download_threads: int = 4
    timeout: int = 3600
    public_url: str = ""
    log_level: str = "info"
    header_timeout_seconds: int = 10
    idle_timeout_seconds: int = 5
    body_timeout_seconds: int = 30
    send_timeout_seconds: int = 30
    min_rate_bytes_per_second: int = 32768
    min_rate_grace_seconds: int = 10
    max_header_bytes: int = 32768
    max_json_bytes: int = 1 << 20
    max_buffered_bytes: int = 64 << 20
    max_buffered_bytes_per_address: int = 8 << 20
    max_connections: int = 1000
    max_connections_per_address: int = 64
    max_transfers_per_client: int = 2
    queue_timeout_seconds: int = 10
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or
    # networks (CIDR). Empty: no peer is a proxy, and the address logged is the peer's own.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))


@dataclass(frozen=True)
class DatabaseConfig:
    """The ``[database]`` section: SQLite (the default, one machine) or PostgreSQL (several).

    ``url`` is a SQLAlchemy URL; ``postgresql://`` uses the psycopg 3 driver
    (:mod:`gateway.db` says what each database is given: isolation, lock waits, time zone).
    """

    url: str = "sqlite:///var/gateway.db"


@dataclass(frozen=True)
class StorageConfig:
    """The ``[storage]`` section; the object store and the audit archive are built from it.

    Optional settings are None when unset (in the TOML file or the environment, an empty
    string); ``policy_template`` None means the bucket policy packaged with the gateway.
    ``allow_insecure_endpoint`` lets ``endpoint_url`` be plain ``http://`` (a test or lab
    store without TLS); the bucket policy then leaves out its TLS-only statement.
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
    allow_insecure_endpoint: bool = False

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
    """``[audit]``: the log's origin, its anchors, and the witnesses that cosign them.

    ``witnesses`` (one ``URL VKEY [VKEY ...]`` a line) and ``quorum`` (how many must
    cosign, 0: all), or ``policy_file`` (a C2SP tlog-policy file), name the witnesses; a
    checkpoint is published only once they cosigned it (:mod:`gateway.services.witnesses`).
    ``integrate_interval_ms`` is how often each instance folds sequenced entries into the
    tree (0: never in the background; readers still integrate first), at most
    ``integrate_batch`` entries a transaction (:mod:`gateway.audit.integrator`).
    """

    origin: str = "gateway.local/audit"
    anchor_every_entries: int = 1000
    anchor_every_minutes: int = 60
    archive_dir: str = "var/audit"
    witnesses: str = ""
    policy_file: str = ""
    quorum: int = 0
    witness_timeout_seconds: int = 10
    witness_deadline_seconds: int = 30
    integrate_interval_ms: int = 200
    integrate_batch: int = 1024


MAX_TOKEN_DAYS = 3660  # ten years: the ceiling of tokens.max_ttl_days


@dataclass(frozen=True)
class TokensConfig:
    """``[tokens]``: a new token's lifetime when none is asked, and the longest one may have."""

    default_ttl_days: int = 90
    max_ttl_days: int = 365


@dataclass(frozen=True)
class SweeperConfig:
    interval_seconds: int = 60


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: bounds on what one request and one client may send (see the README)."""

    json_max_depth: int = 32
    rate_limits: bool = True
    storage_uri: str = "memory://"
    principal_reads: str = "1200/minute"
    principal_writes: str = "600/minute"
    principal_parts: str = "1200/minute"
    principal_content: str = "1200/minute"
    address_reads: str = "3000/minute"
    address_writes: str = "1200/minute"
    address_parts: str = "3000/minute"
    address_content: str = "3000/minute"
    denial_interval_seconds: int = 60


@dataclass(frozen=True)
class QuotasConfig:
    """``[quotas]``: what one organisation may hold in open uploads, and the disk's floor."""

    open_uploads_per_org: int = 20
    in_flight_gib_per_org: int = 1024
    min_free_mib: int = 1024


@dataclass(frozen=True)
class WebConfig:
    """The ``[web]`` section: the dashboard under ``/ui/`` and its sessions."""

    enabled: bool = True
    idle_minutes: int = 15
    absolute_hours: int = 8
    sign_in_minutes: int = 10
    page_size: int = 50
    behind_tls_proxy: bool = False
    report_max_entries: int = 5000


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    custody: CustodySettings = field(default_factory=CustodySettings)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    sweeper: SweeperConfig = field(default_factory=SweeperConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    quotas: QuotasConfig = field(default_factory=QuotasConfig)
    web: WebConfig = field(default_factory=WebConfig)
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
    if kind is tuple:
        return _coerce_list(name, raw)
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


def _coerce_list(name: str, raw: Any) -> tuple[str, ...]:
    """A list of strings: a TOML array, or (from the environment) one string, comma-separated."""
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if isinstance(raw, (list, tuple)) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    raise ConfigError(f"setting {name}: expected a list of strings, got {raw!r}")


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
        (
            config.server.log_level in LOG_LEVELS,
            f"server.log_level: must be one of {', '.join(LOG_LEVELS)}",
        ),
        (
            bool(re.match(r"^[a-z][a-z0-9+]*://", config.database.url)),
            "database.url: must be a database URL, e.g. sqlite:///var/gateway.db or "
            "postgresql+psycopg://user@host/db",
        ),
        (config.access.max_grant_hours >= 1, "access.max_grant_hours: must be at least 1"),
        (config.server.workers >= 1, "server.workers: must be at least 1"),
        (config.server.threads >= 1, "server.threads: must be at least 1"),
        *_server_checks(config.server),
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
            0 <= config.audit.integrate_interval_ms <= 60000,
            "audit.integrate_interval_ms: must be between 0 (no background integrator) and 60000",
        ),
        (
            1 <= config.audit.integrate_batch <= 100000,
            "audit.integrate_batch: must be between 1 and 100000",
        ),
        (
            config.audit.anchor_every_minutes >= 0,
            "audit.anchor_every_minutes: must not be negative",
        ),
        (
            1 <= config.tokens.max_ttl_days <= MAX_TOKEN_DAYS,
            f"tokens.max_ttl_days: must be between 1 and {MAX_TOKEN_DAYS}",
        ),
        (
            1 <= config.tokens.default_ttl_days <= config.tokens.max_ttl_days,
            "tokens.default_ttl_days: must be between 1 and tokens.max_ttl_days",
        ),
        (config.sweeper.interval_seconds >= 0, "sweeper.interval_seconds: must not be negative"),
        (bool(config.database.url), "database.url: must not be empty"),
        *_web_checks(config.web),
    ]
    checks += _limits_checks(config.limits) + _quotas_checks(config.quotas)
    checks += _witness_checks(config.audit)
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"setting {message}")
    try:
        config.custody.validate()
    except CustodySettingError as exc:
        raise ConfigError(str(exc)) from None


def _witness_checks(a: AuditConfig) -> list[tuple[bool, str]]:
    """The witnesses' settings: one way to name them, a quorum they can meet, bounded waits."""
    from gateway.services.witnesses import parse_witness_lines  # the vkeys' own parser

    try:
        listed = len(parse_witness_lines(a.witnesses))
        lines_error = ""
    except ValueError as exc:
        listed, lines_error = 0, str(exc)
    return [
        (not lines_error, lines_error),
        (
            not (a.witnesses.strip() and a.policy_file),
            "audit.witnesses: give the witnesses or audit.policy_file, not both",
        ),
        (
            a.quorum == 0 or not a.policy_file,
            "audit.quorum: leave it 0 with audit.policy_file, whose quorum line decides",
        ),
        (
            0 <= a.quorum <= listed or bool(a.policy_file),
            f"audit.quorum: must be between 0 (all) and the {listed} witnesses listed",
        ),
        (
            1 <= a.witness_timeout_seconds <= a.witness_deadline_seconds <= 600,
            "audit.witness_timeout_seconds: must be at least 1 and at most "
            "audit.witness_deadline_seconds, itself at most 600",
        ),
    ]


def _web_checks(w: WebConfig) -> list[tuple[bool, str]]:
    """The dashboard's session lifetimes and page bounds."""
    return [
        (1 <= w.idle_minutes <= 240, "web.idle_minutes: must be between 1 and 240"),
        (
            1 <= w.absolute_hours <= 24 and w.absolute_hours * 60 >= w.idle_minutes,
            "web.absolute_hours: must be between 1 and 24, and at least web.idle_minutes",
        ),
        (1 <= w.sign_in_minutes <= 60, "web.sign_in_minutes: must be between 1 and 60"),
        (10 <= w.page_size <= 500, "web.page_size: must be between 10 and 500"),
        (
            1 <= w.report_max_entries <= 100_000,
            "web.report_max_entries: must be between 1 and 100000",
        ),
    ]


def _server_checks(s: ServerConfig) -> list[tuple[bool, str]]:
    """The edge's timeouts and bounds: each must be positive, the bounds within reason."""
    positive = (
        "upload_threads",
        "download_threads",
        "header_timeout_seconds",
        "idle_timeout_seconds",
        "body_timeout_seconds",
        "send_timeout_seconds",
        "min_rate_grace_seconds",
        "queue_timeout_seconds",
    )
    checks = [(getattr(s, name) >= 1, f"server.{name}: must be at least 1") for name in positive]
    lanes = s.threads + s.upload_threads + s.download_threads
    return [
        *checks,
        *_proxy_checks(s.trusted_proxies),
        (s.timeout >= 1, "server.timeout: must be at least 1"),
        (
            s.min_rate_bytes_per_second >= 0,
            "server.min_rate_bytes_per_second: must not be negative",
        ),
        (
            1024 <= s.max_header_bytes <= 1 << 20,
            "server.max_header_bytes: must be between 1024 and 1048576",
        ),
        (
            1024 <= s.max_json_bytes <= 64 << 20,
            "server.max_json_bytes: must be between 1024 and 67108864",
        ),
        (
            s.max_buffered_bytes >= s.max_json_bytes + s.max_header_bytes,
            "server.max_buffered_bytes: must be at least server.max_json_bytes + server.max_header_bytes",
        ),
        (
            s.max_json_bytes + s.max_header_bytes
            <= s.max_buffered_bytes_per_address
            <= s.max_buffered_bytes,
            "server.max_buffered_bytes_per_address: must be at least server.max_json_bytes +"
            " server.max_header_bytes and at most server.max_buffered_bytes",
        ),
        (
            s.max_connections > lanes,
            "server.max_connections: must be more than threads + upload_threads + download_threads",
        ),
        (
            s.max_connections_per_address >= 0,
            "server.max_connections_per_address: must not be negative (0: no limit)",
        ),
        (
            s.max_transfers_per_client == 0
            or 1 <= s.max_transfers_per_client < min(s.upload_threads, s.download_threads),
            "server.max_transfers_per_client: must be less than upload_threads and"
            " download_threads, so that one client never holds a whole lane (0: no limit)",
        ),
    ]


def _proxy_checks(proxies: tuple[str, ...]) -> list[tuple[bool, str]]:
    checks = []
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy)
            checks.append((True, ""))
        except ValueError as exc:  # the reason: not an address, or host bits set in a network
            checks.append((False, f"server.trusted_proxies: {exc}"))
    return checks


RATE_BUDGETS = tuple(
    f"{scope}_{budget}"
    for scope in ("principal", "address")
    for budget in ("reads", "writes", "parts", "content")
)
"""The ``[limits]`` settings that are rate budgets (``N/second|minute|hour``)."""


def _limits_checks(s: LimitsConfig) -> list[tuple[bool, str]]:
    from limits import parse_many  # imported here: the client install has no `limits`

    checks = [
        (2 <= s.json_max_depth <= 256, "limits.json_max_depth: must be between 2 and 256"),
        (s.denial_interval_seconds >= 1, "limits.denial_interval_seconds: must be at least 1"),
        (bool(s.storage_uri), "limits.storage_uri: must not be empty"),
    ]
    for name in RATE_BUDGETS:
        value = getattr(s, name)
        try:
            ok = len(parse_many(value)) >= 1
        except ValueError:
            ok = False
        checks.append((ok, f"limits.{name}: expected a rate such as '600/minute', got {value!r}"))
    return checks


def _quotas_checks(q: QuotasConfig) -> list[tuple[bool, str]]:
    return [
        (q.open_uploads_per_org >= 1, "quotas.open_uploads_per_org: must be at least 1"),
        (q.in_flight_gib_per_org >= 1, "quotas.in_flight_gib_per_org: must be at least 1"),
        (q.min_free_mib >= 0, "quotas.min_free_mib: must not be negative"),
    ]


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``GATEWAY_<SECTION>_<KEY>`` variables as nested settings (the gateway's own excluded)."""
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith("GATEWAY_") or name in OWN_VARIABLES:
            continue
        rest = name[len("GATEWAY_") :].lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                out.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return out


def check_environment(environ: Mapping[str, str], also: frozenset[str] = frozenset()) -> None:
    """Refuse a ``GATEWAY_*`` variable that is neither a setting's nor one of the gateway's own.

    ``also``: further variables the configuration names (the custody PIN's, say).
    """
    known = OWN_VARIABLES | also
    sections = tuple(f"GATEWAY_{name.upper()}_" for name in _SECTIONS)
    for name in sorted(environ):
        if not name.startswith("GATEWAY_") or name in known or name.startswith(TEST_PREFIX):
            continue
        if name.startswith(sections):
            continue
        settings = [
            f"GATEWAY_{sec}_{key}".upper() for sec, keys in _defaults().items() for key in keys
        ]
        close = difflib.get_close_matches(name, [*known, *settings], n=1)
        guess = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"environment variable {name}: neither a setting (GATEWAY_<SECTION>_<KEY>) "
            f"nor one of the gateway's own variables{guess}"
        )


def _defaults() -> dict[str, dict[str, Any]]:
    """Every section's defaults, by setting."""
    return {name: dataclasses.asdict(getattr(Config(), name)) for name in _SECTIONS}


def locate(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read (see the module's note), or None: the defaults."""
    named = path or environ.get("GATEWAY_CONFIG")
    if not named:
        return next((p for p in SEARCHED if p.is_file()), None)
    if not Path(named).is_file():
        raise ConfigError(f"config file {named}: not found")
    return Path(named)


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        return value
    path = Path(value)
    return value if path.is_absolute() else os.path.normpath(base / path)


def _sqlite_absolute(url: Any, base: Path) -> Any:
    found = _SQLITE.match(url) if isinstance(url, str) else None
    if found is None or not found.group(2) or found.group(2).startswith((":memory:", "/")):
        return url
    return f"{found.group(1)}:///{os.path.normpath(base / found.group(2))}"


def resolve_paths(values: dict[str, dict[str, Any]], base: Path) -> None:
    """Make the file's relative paths, and the defaults' where the file gives none, relative
    to ``base`` (the file's directory), in place."""
    for name in PATH_SETTINGS:
        section, key = name.split(".")
        if section not in _SECTIONS:
            continue
        given = values.setdefault(section, {})
        given[key] = _absolute(given.get(key, _defaults()[section].get(key)), base)
    database = values.setdefault("database", {})
    database["url"] = _sqlite_absolute(database.get("url", DatabaseConfig.url), base)


def _read_file(target: Path) -> dict[str, dict[str, Any]]:
    try:
        with open(target, "rb") as fh:
            parsed = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {target}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {target}: {exc.strerror}") from None
    values: dict[str, dict[str, Any]] = {}
    for section, settings in parsed.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"setting {section}: expected a [{section}] table")
        values[section] = dict(settings)
    return values


def load(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the configuration from ``path`` (or the places searched) and the environment."""
    environ = os.environ if environ is None else environ
    target = locate(path, environ)
    values: dict[str, dict[str, Any]] = {}
    source = "defaults"
    if target is not None:
        values = _read_file(target)
        resolve_paths(values, target.resolve().parent)
        source = str(target.resolve())
    overrides = env_overrides(environ)
    for section, settings in overrides.items():
        values.setdefault(section, {}).update(settings)
    try:
        config = _build(values, source)
    except ConfigError as exc:
        raise ConfigError(_from_environment(str(exc), overrides)) from None
    custody = getattr(config, "custody", None)  # the PIN may sit in the variable it names
    check_environment(environ, frozenset({str(getattr(custody, "pkcs11_pin_env", ""))}))
    return config


def _from_environment(message: str, overrides: Mapping[str, Mapping[str, str]]) -> str:
    """``message`` naming the environment variable its setting came from, if it did."""
    named = re.match(r"^setting ([a-z_]+)\.([a-z0-9_]+):", message)
    if named and named.group(2) in overrides.get(named.group(1), {}):
        return f"{message} (from GATEWAY_{named.group(1).upper()}_{named.group(2).upper()})"
    return message
