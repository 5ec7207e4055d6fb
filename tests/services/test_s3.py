"""The access path on the S3 backend (moto, in-process): download URLs, shredding deletes every version."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import requests
from flask.testing import FlaskClient

from gateway.clock import FrozenClock
from gateway.models import CustodyKey
from gateway.runtime import Runtime
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import make_config
from tests.services.conftest import Evaluator, Shared

BUCKET = "access-test-artifacts"
AUDIT_BUCKET = "access-test-audit"


@pytest.fixture
def rt(tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The shared ``rt`` fixture, with the object store in a moto S3 bucket."""
    from moto import mock_aws

    from gateway import bootstrap

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    with mock_aws():
        config = make_config(
            tmp_path,
            **{
                "storage.backend": "s3",
                "storage.bucket": BUCKET,
                "storage.audit_bucket": AUDIT_BUCKET,
            },
        )
        list(bootstrap.init(config))
        # The provisioned bucket policy (tested in tests/storage) admits only the gateway's
        # own principal, which moto cannot tell apart from this test's: drop it here.
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (BUCKET, AUDIT_BUCKET):
            s3.delete_bucket_policy(Bucket=bucket)
        runtime = Runtime(config, clock=clock)
        yield runtime
        runtime.close()


def versions(key: str) -> list[dict]:
    answer = boto3.client("s3", region_name="us-east-1").list_object_versions(
        Bucket=BUCKET, Prefix=key
    )
    return answer.get("Versions", []) + answer.get("DeleteMarkers", [])


def test_urls_are_the_gateways_own_unless_presigning_is_on(
    client: FlaskClient, lab: Lab, evaluator: Evaluator, shared: Shared, granted: dict, rt: Runtime
) -> None:
    """A presigned URL bypasses the gateway's checks and log: off by default."""
    issued = evaluator.url(shared.artifact).get_json()
    url = urlparse(issued["url"])
    assert url.path == f"/download/{shared.artifact['id']}" and "X-Amz-Expires" not in url.query
    fetched = client.get(f"{url.path}?{url.query}")
    assert fetched.status_code == 200
    header = base64.b64decode(issued["header"])
    assert evaluator.decrypt(header + fetched.data[issued["payload_offset"] :]) == shared.plaintext


def test_presigned_urls_last_at_most_the_recheck_bound(
    client: FlaskClient,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rt, "config", rt.config.replace(**{"access.presigned_urls": True}))
    key = helpers.object_key(rt, shared.artifact["id"])
    assert (
        evaluator.decrypt(evaluator.content(shared.artifact, "bytes=0-").data) == shared.plaintext
    )

    issued = evaluator.url(shared.artifact).get_json()
    query = parse_qs(urlparse(issued["url"]).query)
    assert int(query["X-Amz-Expires"][0]) == rt.config.access.recheck_seconds
    fetched = requests.get(issued["url"], timeout=10)
    assert fetched.status_code == 200
    header = base64.b64decode(issued["header"])
    assert (
        evaluator.decrypt(header + fetched.content[issued["payload_offset"] :]) == shared.plaintext
    )

    assert versions(key)
    assert (
        client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth).status_code == 204
    )
    assert versions(key) == []
    with rt.db.session() as session:
        assert session.query(CustodyKey).count() == 0
    assert evaluator.content(shared.artifact).status_code == 410
    assert evaluator.url(shared.artifact).status_code == 410


def test_expiry_deletes_every_version(
    lab: Lab, evaluator: Evaluator, shared: Shared, granted: dict, rt: Runtime, clock: FrozenClock
) -> None:
    from gateway.sweeper import sweep_once

    key = helpers.object_key(rt, shared.artifact["id"])
    assert evaluator.content(shared.artifact).status_code == 200
    clock.advance(days=rt.config.access.review_window_days)
    assert sweep_once(rt)["artifacts_expired"] == 1
    assert versions(key) == []
    with rt.db.session() as session:
        assert session.query(CustodyKey).count() == 0
