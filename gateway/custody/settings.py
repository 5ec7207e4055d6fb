"""The ``[custody]`` settings: which backend keeps the custody identities, and how.

One frozen dataclass with every default; :meth:`CustodySettings.validate` raises
:class:`CustodySettingError` naming the first bad setting (the configuration loader
raises it as its ``ConfigError``). Every field is a
``str``, ``int`` or ``bool``, so the configuration loader reads it from TOML and from
``GATEWAY_CUSTODY_<KEY>`` environment variables like any other section.

No setting holds a secret: the PKCS#11 PIN is read, when the token is opened, from
``pkcs11_pin_file`` or from the environment variable named by ``pkcs11_pin_env``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

BACKENDS = ("local", "aws-kms", "pkcs11")
_ARN = r"arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:[0-9]{12}:"
KMS_KEY_NAME = re.compile(
    rf"({_ARN})?key/[A-Za-z0-9-]{{1,64}}|[A-Za-z0-9-]{{1,64}}|({_ARN})?alias/[A-Za-z0-9/_-]{{1,250}}"
)
"""A key as ``kms_key_id`` may name it: key id, key ARN, ``alias/name`` or alias ARN."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ALIAS_PREFIX = re.compile(r"alias/[A-Za-z0-9/_-]{0,128}")  # KMS allows 256 with the upload id
_LABEL_PREFIX = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


class CustodySettingError(ValueError):
    """A ``[custody]`` setting is wrong; the message names it (``setting custody.KEY: ...``)."""


@dataclass(frozen=True)
class CustodySettings:
    backend: str = "local"
    # local: directory of per-artifact key files ("" = <keys.dir>/custody).
    local_key_dir: str = ""
    # aws-kms: one KMS key per artifact (true), or every value under kms_key_id (false).
    kms_per_artifact_keys: bool = True
    kms_key_id: str = ""
    kms_alias_prefix: str = "alias/gateway-custody/"  # + upload id: each per-artifact key's alias
    kms_region: str = "us-east-1"
    kms_endpoint_url: str = ""
    kms_deletion_window_days: int = 7
    kms_timeout_seconds: int = 10
    kms_max_attempts: int = 3
    # pkcs11: the module (shared library), the token, where the PIN is, key label prefix.
    pkcs11_module: str = ""
    pkcs11_token_label: str = "gateway-custody"  # noqa: S105 - a token's name, not a secret
    pkcs11_pin_file: str = ""
    pkcs11_pin_env: str = "GATEWAY_PKCS11_PIN"
    pkcs11_key_label_prefix: str = "gateway-custody:"

    def validate(self) -> None:
        """Raise :class:`CustodySettingError` naming the first setting that is wrong."""
        for ok, message in self._checks():
            if not ok:
                raise CustodySettingError(f"setting custody.{message}")

    def _checks(self) -> list[tuple[bool, str]]:
        checks = [
            (self.backend in BACKENDS, 'backend: must be "local", "aws-kms" or "pkcs11"'),
            (
                7 <= self.kms_deletion_window_days <= 30,
                "kms_deletion_window_days: must be between 7 and 30 (what KMS allows)",
            ),
            (
                1 <= self.kms_timeout_seconds <= 300,
                "kms_timeout_seconds: must be between 1 and 300",
            ),
            (1 <= self.kms_max_attempts <= 10, "kms_max_attempts: must be between 1 and 10"),
            (
                not self.kms_endpoint_url or _secure_endpoint(self.kms_endpoint_url),
                "kms_endpoint_url: must be empty or an https:// URL "
                "(http:// only to a loopback address)",
            ),
            (
                bool(_ALIAS_PREFIX.fullmatch(self.kms_alias_prefix))
                and not self.kms_alias_prefix.startswith("alias/aws/"),
                "kms_alias_prefix: must be alias/ and up to 128 characters of "
                "A-Z a-z 0-9 / _ -, not under alias/aws/",
            ),
        ]
        if self.backend == "aws-kms":
            checks += [
                (bool(self.kms_region), "kms_region: must not be empty"),
                (
                    self.kms_per_artifact_keys or bool(self.kms_key_id),
                    "kms_key_id: must name the shared key when kms_per_artifact_keys is false",
                ),
                (
                    not self.kms_key_id or bool(KMS_KEY_NAME.fullmatch(self.kms_key_id)),
                    "kms_key_id: must be a key id, key ARN, alias/NAME or alias ARN",
                ),
            ]
        if self.backend == "pkcs11":
            checks += [
                (
                    bool(self.pkcs11_module) and Path(self.pkcs11_module).is_absolute(),
                    "pkcs11_module: must be the absolute path of the PKCS#11 library",
                ),
                (
                    0 < len(self.pkcs11_token_label.encode()) <= 32,
                    "pkcs11_token_label: must be 1 to 32 bytes (a PKCS#11 token label)",
                ),
                (
                    bool(self.pkcs11_pin_file) or bool(_ENV_NAME.fullmatch(self.pkcs11_pin_env)),
                    "pkcs11_pin_env: must name an environment variable when pkcs11_pin_file is empty",
                ),
                (
                    bool(_LABEL_PREFIX.fullmatch(self.pkcs11_key_label_prefix)),
                    "pkcs11_key_label_prefix: must be 1-64 characters of A-Z a-z 0-9 . _ : / -",
                ),
            ]
        return checks

    def key_dir(self, keys_dir: Path) -> Path:
        """Where the ``local`` backend keeps its per-artifact key files."""
        return Path(self.local_key_dir) if self.local_key_dir else keys_dir / "custody"


def _secure_endpoint(url: str) -> bool:
    """https://, or http:// to this machine only: custody identities must not cross a network in clear."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    if not host or parts.username is not None or not port_ok:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
