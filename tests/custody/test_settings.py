"""``[custody]`` settings: defaults, the documented block, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError
from gateway.custody import CustodyContext, CustodySettings, make_custody
from gateway.custody.kms import KmsCustody
from gateway.custody.local import LocalCustody
from gateway.custody.pkcs11 import Pkcs11Custody
from gateway.custody.settings import CustodySettingError

# The block config/gateway.toml carries (every setting, with its default).
CONFIG_BLOCK = """
[custody]
backend = "local"
local_key_dir = ""
kms_per_artifact_keys = true
kms_key_id = ""
kms_alias_prefix = "alias/gateway-custody/"
kms_region = "us-east-1"
kms_endpoint_url = ""
kms_deletion_window_days = 7
kms_timeout_seconds = 10
kms_max_attempts = 3
pkcs11_module = ""
pkcs11_token_label = "gateway-custody"
pkcs11_pin_file = ""
pkcs11_pin_env = "GATEWAY_PKCS11_PIN"
pkcs11_key_label_prefix = "gateway-custody:"
"""


def test_the_documented_block_lists_every_setting_with_its_default() -> None:
    block = tomllib.loads(CONFIG_BLOCK)["custody"]
    names = [f.name for f in dataclasses.fields(CustodySettings)]
    assert list(block) == names
    assert CustodySettings(**block) == CustodySettings()


def test_every_setting_is_a_type_the_configuration_loader_reads() -> None:
    for f in dataclasses.fields(CustodySettings):
        assert type(getattr(CustodySettings(), f.name)) in (str, int, bool), f.name


def test_the_defaults_are_valid_and_choose_the_local_backend(tmp_path: Path) -> None:
    CustodySettings().validate()
    assert isinstance(make_custody(CustodySettings(), keys_dir=tmp_path), LocalCustody)


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"backend": "vault"}, "custody.backend"),
        ({"kms_deletion_window_days": 6}, "custody.kms_deletion_window_days"),
        ({"kms_deletion_window_days": 31}, "custody.kms_deletion_window_days"),
        ({"kms_timeout_seconds": 0}, "custody.kms_timeout_seconds"),
        ({"kms_max_attempts": 0}, "custody.kms_max_attempts"),
        ({"kms_endpoint_url": "127.0.0.1:4566"}, "custody.kms_endpoint_url"),
        # custody identities never cross a network in clear: http:// only to this machine
        ({"kms_endpoint_url": "http://kms.example.com"}, "custody.kms_endpoint_url"),
        ({"kms_endpoint_url": "http://127.0.0.1.example.com:4566"}, "custody.kms_endpoint_url"),
        ({"kms_endpoint_url": "http://10.0.0.5:4566"}, "custody.kms_endpoint_url"),
        ({"kms_endpoint_url": "ftp://127.0.0.1"}, "custody.kms_endpoint_url"),
        ({"kms_endpoint_url": "https://"}, "custody.kms_endpoint_url"),
        ({"kms_endpoint_url": "https://user:pw@kms.example.com"}, "custody.kms_endpoint_url"),
        ({"kms_endpoint_url": "https://kms.example.com:99999"}, "custody.kms_endpoint_url"),
        ({"kms_alias_prefix": "gateway-custody/"}, "custody.kms_alias_prefix"),
        ({"kms_alias_prefix": "alias/aws/custody/"}, "custody.kms_alias_prefix"),
        ({"kms_alias_prefix": "alias/gateway.custody/"}, "custody.kms_alias_prefix"),
        ({"kms_alias_prefix": "alias/" + "a" * 129}, "custody.kms_alias_prefix"),
        (
            {"backend": "aws-kms", "kms_per_artifact_keys": False},
            "custody.kms_key_id",
        ),
        ({"backend": "aws-kms", "kms_region": ""}, "custody.kms_region"),
        ({"backend": "aws-kms", "kms_key_id": "key id"}, "custody.kms_key_id"),
        ({"backend": "pkcs11"}, "custody.pkcs11_module"),
        (
            {"backend": "pkcs11", "pkcs11_module": "libsofthsm2.so"},
            "custody.pkcs11_module",
        ),
        (
            {"backend": "pkcs11", "pkcs11_module": "/x.so", "pkcs11_token_label": "t" * 33},
            "custody.pkcs11_token_label",
        ),
        (
            {"backend": "pkcs11", "pkcs11_module": "/x.so", "pkcs11_pin_env": "1 PIN"},
            "custody.pkcs11_pin_env",
        ),
        (
            {"backend": "pkcs11", "pkcs11_module": "/x.so", "pkcs11_key_label_prefix": ""},
            "custody.pkcs11_key_label_prefix",
        ),
    ],
)
def test_a_bad_setting_is_named(changes: dict[str, object], setting: str) -> None:
    settings = dataclasses.replace(CustodySettings(), **changes)
    with pytest.raises(CustodySettingError, match=f"^setting {setting}: "):
        settings.validate()
    with pytest.raises(CustodySettingError, match=f"^setting {setting}: "):
        make_custody(settings, keys_dir=Path("keys"))
    with pytest.raises(ConfigError, match=f"^setting {setting}: "):  # as the loader says it
        Config().replace(custody=settings)


@pytest.mark.parametrize(
    "url",
    [
        "https://kms.eu-west-1.amazonaws.com",
        "https://kms.example.com:8443",
        "http://127.0.0.1:4566",
        "http://127.9.9.9:4566",
        "http://[::1]:4566",
        "http://localhost:4566",
    ],
)
def test_kms_endpoints_over_tls_or_on_this_machine_are_accepted(url: str) -> None:
    CustodySettings(backend="aws-kms", kms_endpoint_url=url).validate()


def test_each_backend_name_makes_its_backend_without_connecting(
    tmp_path: Path, aws_credentials: None
) -> None:
    kms = make_custody(
        CustodySettings(backend="aws-kms", kms_endpoint_url="http://127.0.0.1:9"),
        keys_dir=tmp_path,
    )
    hsm = make_custody(
        CustodySettings(backend="pkcs11", pkcs11_module="/nowhere/libpkcs11.so"),
        keys_dir=tmp_path,
    )
    assert isinstance(kms, KmsCustody) and kms.destroys_keys
    assert isinstance(hsm, Pkcs11Custody) and hsm.destroys_keys
    assert "PIN" not in repr(hsm) and "pin" not in repr(hsm)
    kms.close()
    hsm.close()


@pytest.mark.parametrize(
    "fields",
    [
        ("", "art_1", "lab"),
        ("up_1", "art/1", "lab"),
        ("up_1", "art_1", "lab a"),
        ("up_1", "art_1", "x" * 65),
        ("up_1", "art_1", "-lab"),
        ("up_1", "art_1", "lab\n"),
    ],
)
def test_a_context_holds_only_ids(fields: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError, match="custody context"):
        CustodyContext(*fields)


def test_the_context_has_one_canonical_form() -> None:
    ctx = CustodyContext("up_1", "art_2", "lab-a")
    assert ctx.canonical() == b'{"artifact":"art_2","org":"lab-a","upload":"up_1"}'
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.org = "lab-b"  # type: ignore[misc]
