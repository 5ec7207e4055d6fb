"""An S3 endpoint without TLS (moto server, a lab's MinIO): refused, or explicitly allowed.

The packaged policy denies every request without TLS, so provisioning it for an
``http://`` endpoint would lock the gateway out of its own buckets: it is refused in one
line naming the setting, before anything is created. With ``allow_insecure_endpoint``
the TLS statement alone is left out, and the steps say so. A policy the store does not
honour (moto evaluates no condition) is found by a probe and named in a warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from gateway.storage import StorageError, StorageSettings, make_store
from gateway.storage.provision import load_template, provision, requires_tls, transport_policy
from gateway.storage.s3 import make_client
from tests.storage.conftest import s3_settings

HONOURED = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowTheGateway",
            "Effect": "Allow",
            "Principal": {"AWS": "${gateway_principal_arns}"},
            "Action": "s3:*",
            "Resource": ["${bucket_arn}", "${bucket_arn}/*"],
        }
    ],
}


def bucket_names(settings: StorageSettings, session: boto3.session.Session) -> list[str]:
    client = make_client(settings, session=session)
    return [b["Name"] for b in client.list_buckets()["Buckets"]]


def sids(settings: StorageSettings, session: boto3.session.Session, bucket: str) -> set[str]:
    policy = json.loads(
        make_client(settings, session=session).get_bucket_policy(Bucket=bucket)["Policy"]
    )
    return {s["Sid"] for s in policy["Statement"]}


def test_an_endpoint_without_tls_is_refused_before_anything_is_made(
    tmp_path: Path, aws_credentials: None, moto_server: str, boto_session: Any
) -> None:
    settings = s3_settings(tmp_path, moto_server, allow_insecure_endpoint=False)
    with pytest.raises(StorageError) as refused:
        provision(settings, session=boto_session)
    assert str(refused.value) == (
        f"setting storage.endpoint_url: {moto_server} does not use TLS, and the bucket policy "
        "denies every request without TLS, so the gateway would lock itself out of its "
        "buckets; use an https:// endpoint, or set storage.allow_insecure_endpoint = true for "
        "a test or lab store"
    )
    names = bucket_names(settings, boto_session)
    assert settings.bucket not in names and settings.audit_bucket not in names


def test_allowed_it_leaves_out_only_the_tls_statement_and_says_so(
    tmp_path: Path, aws_credentials: None, moto_server: str, boto_session: Any
) -> None:
    settings = s3_settings(tmp_path, moto_server)
    assert settings.allow_insecure_endpoint
    done = provision(settings, session=boto_session)
    assert done[0] == (
        f"warning: storage.allow_insecure_endpoint is set: requests to {moto_server} travel "
        "without TLS, and the bucket policy does not require it"
    )
    assert "TLS not required by the policy" in done[1] and "TLS not required" in done[2]
    for bucket in (settings.bucket, settings.audit_bucket):
        assert sids(settings, boto_session, bucket) == {"DenyEveryoneButTheGateway"}
    # moto takes that Deny as absolute: the probe finds the gateway locked out, and says so.
    assert done[3].startswith(f"warning: bucket {settings.bucket}: the bucket policy just ")
    assert "denies the gateway itself" in done[3] and "storage.policy_template" in done[3]


def test_a_policy_the_store_honours_passes_the_probe_and_the_store_works(
    tmp_path: Path, aws_credentials: None, moto_server: str, boto_session: Any
) -> None:
    template = tmp_path / "policy.json"
    template.write_text(json.dumps(HONOURED))
    settings = s3_settings(tmp_path, moto_server, policy_template=template)
    done = provision(settings, session=boto_session)
    assert [line for line in done if line.startswith("warning:")] == [done[0]]  # TLS only
    assert sids(settings, boto_session, settings.bucket) == {"AllowTheGateway"}
    make_store(settings, session=boto_session).check_writable()


def test_over_tls_the_template_is_kept_whole() -> None:
    template = load_template(StorageSettings())
    for endpoint in (None, "https://minio.lab.example:9000", "HTTPS://s3.example"):
        settings = StorageSettings(backend="s3", endpoint_url=endpoint)
        assert transport_policy(settings, template) == (template, [])


def test_a_template_without_tls_statements_is_still_refused_over_http() -> None:
    settings = StorageSettings(backend="s3", endpoint_url="http://10.0.0.1:9000")
    assert not requires_tls(HONOURED)
    with pytest.raises(StorageError) as refused:
        transport_policy(settings, HONOURED)
    assert str(refused.value) == (
        "setting storage.endpoint_url: http://10.0.0.1:9000 does not use TLS; use an https:// "
        "endpoint, or set storage.allow_insecure_endpoint = true for a test or lab store"
    )


def test_every_statement_on_secure_transport_is_found_whatever_its_spelling() -> None:
    template = {
        "Statement": [
            {"Sid": "A", "Effect": "Deny", "Condition": {"Bool": {"AWS:SecureTransport": False}}},
            {"Sid": "B", "Effect": "Deny", "Condition": {"StringEquals": {"aws:username": "x"}}},
            {
                "Sid": "C",
                "Effect": "Deny",
                "Condition": {"BoolIfExists": {"aws:securetransport": "false"}},
            },
        ]
    }
    assert requires_tls(template)
    settings = StorageSettings(
        backend="s3", endpoint_url="http://127.0.0.1:9000", allow_insecure_endpoint=True
    )
    kept, warnings = transport_policy(settings, template)
    assert [s["Sid"] for s in kept["Statement"]] == ["B"] and len(warnings) == 1
    assert not requires_tls(kept)
