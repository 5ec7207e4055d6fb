"""What the S3 backend raises when S3 refuses the gateway, or cannot be reached at all.

A refusal (403: credentials, a bucket policy) is :class:`AccessDenied`, naming the cause;
an endpoint nobody answers on is a plain :class:`StorageError`. Neither is ever a raw
botocore exception, which the services could not map and would answer 500.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from gateway.storage import NotFound, StorageError, make_store
from gateway.storage.s3 import AccessDenied, S3Store
from tests.storage.conftest import (
    GATEWAY_ARN,
    S3_KINDS,
    Backend,
    make_backend,
    s3_context,
    s3_settings,
)

BODY = b"x" * 1024
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture(params=S3_KINDS)
def denied(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aws_credentials: None,
    boto_session: boto3.session.Session,
) -> Iterator[tuple[Backend, str]]:
    """A store whose bucket policy denies every object request; and an upload begun before."""
    with s3_context(request.param, request) as endpoint:
        settings = s3_settings(tmp_path, endpoint, gateway_principal_arn=GATEWAY_ARN)
        backend = make_backend(request.param, settings, boto_session)
        backend.store.begin_upload("artifacts/before.age")
        backend.client.put_object(Bucket=settings.bucket, Key="gw/artifacts/kept.age", Body=b"k")
        handle = backend.store.begin_upload("artifacts/open.age")
        deny = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyAll",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{settings.bucket}/*"],
                }
            ],
        }
        backend.client.put_bucket_policy(Bucket=settings.bucket, Policy=json.dumps(deny))
        yield backend, handle


def test_a_refusal_is_access_denied_naming_the_cause(denied: tuple[Backend, str]) -> None:
    backend, handle = denied
    store = backend.store
    calls: dict[str, Any] = {
        "begin_upload": lambda: store.begin_upload("artifacts/new.age"),
        "put_part": lambda: store.put_part(
            "artifacts/open.age", handle, 1, 0, len(BODY), io.BytesIO(BODY), SHA
        ),
        "open_read": lambda: b"".join(store.open_read("artifacts/kept.age")),
        "size": lambda: store.size("artifacts/kept.age"),
        "exists": lambda: store.exists("artifacts/kept.age"),
        "check_writable": store.check_writable,
    }
    for name, call in calls.items():
        with pytest.raises(AccessDenied) as refused:
            call()
        message = str(refused.value)
        assert "the object store denied the gateway access (S3 said " in message, name
        assert "credentials and the bucket policy" in message, name
        assert not isinstance(refused.value, NotFound), name  # never "gone": it is there


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_endpoint_nobody_answers_on_is_a_storage_error(
    tmp_path: Path, aws_credentials: None, boto_session: boto3.session.Session
) -> None:
    settings = s3_settings(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    store = make_store(settings, session=boto_session)
    assert isinstance(store, S3Store)
    for call in (
        lambda: store.stored_parts("artifacts/a.age", "handle"),
        lambda: store.size("artifacts/a.age"),
        lambda: store.open_read("artifacts/a.age", 5),
        lambda: store.abort_upload("artifacts/a.age", "handle"),
    ):
        with pytest.raises(StorageError) as failed:
            call()
        assert not isinstance(failed.value, (AccessDenied, NotFound))
        assert "Could not connect to the endpoint URL" in str(failed.value)
