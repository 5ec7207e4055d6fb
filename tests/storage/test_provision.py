"""Provisioning: the bucket settings read back from S3 are the access-controlled ones."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from gateway.storage import StorageError, StorageSettings
from gateway.storage.provision import (
    DEFAULT_TEMPLATE,
    load_template,
    provision,
    render_policy,
)
from tests.storage.conftest import GATEWAY_ARN, Backend, local_settings


def statements(client: Any, bucket: str) -> dict[str, dict[str, Any]]:
    policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    return {s["Sid"]: s for s in policy["Statement"]}


def check_protected(client: Any, bucket: str, principal: str, *, tls: bool = True) -> None:
    """The bucket is private, encrypted, versioned, and its policy admits only ``principal``.

    ``tls``: the policy denies requests without TLS (False: an insecure endpoint's policy,
    which has no such statement).
    """
    block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    found = statements(client, bucket)
    arn = f"arn:aws:s3:::{bucket}"
    if tls:
        deny = found["DenyInsecureTransport"]
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert sorted(deny["Resource"]) == [arn, f"{arn}/*"]
    else:
        assert set(found) == {"DenyEveryoneButTheGateway"}
    others = found["DenyEveryoneButTheGateway"]
    assert (others["Effect"], others["Principal"]) == ("Deny", "*")
    assert others["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [principal]}}
    assert sorted(others["Resource"]) == [arn, f"{arn}/*"]

    lifecycle = {
        r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    abort = lifecycle["abort-incomplete-multipart-uploads"]
    assert abort["Status"] == "Enabled" and abort["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 3
    }


def test_s3_buckets_are_provisioned_access_controlled(s3_backend: Backend) -> None:
    client, settings = s3_backend.client, s3_backend.settings
    principal = s3_backend.session.client(
        "sts", endpoint_url=settings.endpoint_url
    ).get_caller_identity()["Arn"]

    tls = s3_backend.kind == "s3-inprocess"  # moto server is plain HTTP
    check_protected(client, settings.bucket, principal, tls=tls)
    rules = {
        r["ID"]: r
        for r in client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    }
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1

    check_protected(client, settings.audit_bucket, principal, tls=tls)
    lock = client.get_object_lock_configuration(Bucket=settings.audit_bucket)[
        "ObjectLockConfiguration"
    ]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert lock["Rule"]["DefaultRetention"]["Days"] == settings.audit_retention_days


def test_provisioning_again_restores_the_settings_and_keeps_the_objects(
    s3_backend: Backend,
) -> None:
    settings = replace(s3_backend.settings, gateway_principal_arn=GATEWAY_ARN)
    client = s3_backend.client
    client.delete_bucket_policy(
        Bucket=settings.bucket
    )  # moto would refuse the put below (see conftest)
    client.put_object(Bucket=settings.bucket, Key="gw/artifacts/kept.age", Body=b"kept")

    done = [d for d in provision(settings, session=s3_backend.session) if "warning" not in d]

    assert len(done) == 2 and "(exists)" in done[0] and "(exists)" in done[1]
    tls = s3_backend.kind == "s3-inprocess"
    check_protected(client, settings.bucket, GATEWAY_ARN, tls=tls)
    check_protected(client, settings.audit_bucket, GATEWAY_ARN, tls=tls)
    versions = client.list_object_versions(Bucket=settings.bucket, Prefix="gw/artifacts/kept.age")[
        "Versions"
    ]
    assert [v["Key"] for v in versions] == ["gw/artifacts/kept.age"]


def test_a_kms_key_selects_sse_kms(s3_backend: Backend) -> None:
    settings = replace(
        s3_backend.settings, kms_key_id="arn:aws:kms:us-east-1:123456789012:key/test-key"
    )
    provision(settings, session=s3_backend.session)
    rule = s3_backend.client.get_bucket_encryption(Bucket=settings.bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "arn:aws:kms:us-east-1:123456789012:key/test-key",
    }
    assert rule["BucketKeyEnabled"] is True


def test_local_provisioning_makes_private_directories(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    provision(settings)
    provision(settings)  # idempotent
    for folder in (
        settings.root,
        settings.root / "objects",
        settings.root / "staging",
        settings.audit_dir,
    ):
        assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_policy_template_renders_every_placeholder() -> None:
    template = load_template(StorageSettings())
    rendered = json.dumps(render_policy(template, "b", ["arn:aws-us-gov:iam::1:role/g"]))
    assert "${" not in rendered and "arn:aws-us-gov:s3:::b/*" in rendered


def test_the_default_template_is_the_packaged_one_and_a_configured_one_wins(
    tmp_path: Path,
) -> None:
    packaged = resources.files("gateway.storage").joinpath(DEFAULT_TEMPLATE)
    assert load_template(StorageSettings()) == json.loads(packaged.read_text("utf-8"))
    sids = {s["Sid"] for s in load_template(StorageSettings())["Statement"]}
    assert sids == {"DenyInsecureTransport", "DenyEveryoneButTheGateway"}
    own = tmp_path / "policy.json"
    own.write_text(json.dumps({"Version": "2012-10-17", "Statement": []}))
    assert load_template(StorageSettings(policy_template=own))["Statement"] == []
    own.write_text("{not json")
    with pytest.raises(StorageError, match=r"policy\.json: not JSON"):
        load_template(StorageSettings(policy_template=own))


def test_an_unknown_placeholder_or_missing_template_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unknown placeholder"):
        render_policy({"Resource": "${bucket}"}, "b", ["arn:aws:iam::1:role/g"])
    with pytest.raises(StorageError, match="bucket policy template"):
        load_template(StorageSettings(policy_template=tmp_path / "missing.json"))


def test_an_assumed_role_is_named_by_its_role() -> None:
    from gateway.storage.provision import caller_principal_arn

    class Sts:
        def get_caller_identity(self) -> dict[str, str]:
            return {"Arn": "arn:aws:sts::123456789012:assumed-role/gateway-prod/i-0abc"}

    class Session:
        def client(self, *args: object, **kwargs: object) -> Sts:
            return Sts()

    arn = caller_principal_arn(StorageSettings(backend="s3"), Session())  # type: ignore[arg-type]
    assert arn == "arn:aws:iam::123456789012:role/gateway-prod"
