"""Fixtures for the object-store contract tests: one store per backend.

``local`` uses a temporary directory; ``s3-inprocess`` uses moto inside this process
(``moto.mock_aws``); ``s3-server`` talks HTTP to a real ``moto_server`` process started
once per test session on 127.0.0.1 and killed at the end. Each S3 test gets buckets of
its own, provisioned by :func:`gateway.storage.provision.provision`.

moto evaluates a bucket policy's Deny statements as unconditional (it ignores the
``aws:SecureTransport`` and ``aws:PrincipalArn`` conditions), so after provisioning the
object tests remove the policy; ``test_provision.py`` reads the policy back instead.
moto server speaks plain HTTP, so its settings allow an insecure endpoint (the policy then
has no TLS statement); in-process moto stands behind the default AWS endpoint, over TLS.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws  # imported before any boto3 session: it hooks into botocore's handlers

from gateway.storage import ObjectStore, StorageSettings, make_store
from gateway.storage.provision import provision
from gateway.storage.s3 import make_client

MIB = 1 << 20
S3_KINDS = ["s3-inprocess", "s3-server"]
ALL_KINDS = ["local", *S3_KINDS]
GATEWAY_ARN = "arn:aws:iam::123456789012:role/gateway"


@dataclass
class Backend:
    """A provisioned store and what a test needs to look behind its interface."""

    kind: str
    settings: StorageSettings
    store: ObjectStore
    client: Any = None  # an S3 client on the same buckets (None for local)
    session: Any = None  # the boto3 session the store was made with

    def fetch(self, url: str) -> bytes:
        """GET a presigned URL with plain HTTP (moto intercepts ``requests`` in-process)."""
        if self.kind == "s3-inprocess":
            import requests

            answer = requests.get(url, timeout=10)
            assert answer.status_code == 200, answer.text
            return answer.content
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - a local test server
            return bytes(answer.read())

    def full_key(self, key: str) -> str:
        return self.settings.prefix + key


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, and nothing read from the developer's ~/.aws."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One boto3 session for every test: each new session parses the API models again (~0.3 s)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The URL of a ``moto_server`` process on 127.0.0.1, up for the whole session."""
    exe = Path(sys.executable).parent / "moto_server"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode} before answering on {url}")
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=1):  # noqa: S310 - local test server
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer on {url} within 30 s")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def s3_settings(tmp_path: Path, endpoint_url: str | None = None, **changes: Any) -> StorageSettings:
    unique = uuid.uuid4().hex[:12]
    base = StorageSettings(
        backend="s3",
        root=tmp_path / "store",
        bucket=f"artifacts-{unique}",
        audit_bucket=f"audit-{unique}",
        endpoint_url=endpoint_url,
        allow_insecure_endpoint=endpoint_url is not None,
        prefix="gw/",
        multipart_abort_days=3,
        audit_retention_days=1,
        audit_dir=tmp_path / "audit",
    )
    return replace(base, **changes)


def local_settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(backend="local", root=tmp_path / "store", audit_dir=tmp_path / "audit")


@contextlib.contextmanager
def s3_context(kind: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """moto active in-process, or the URL of the moto server."""
    if kind == "s3-inprocess":
        with mock_aws():
            yield None
    else:
        yield request.getfixturevalue("moto_server")


def make_backend(
    kind: str,
    settings: StorageSettings,
    session: boto3.session.Session,
    *,
    keep_policy: bool = False,
) -> Backend:
    provision(settings, session=session)
    if settings.backend == "local":
        return Backend(kind, settings, make_store(settings))
    client = make_client(settings, session=session)
    if not keep_policy:
        for bucket in (settings.bucket, settings.audit_bucket):
            client.delete_bucket_policy(Bucket=bucket)
    return Backend(kind, settings, make_store(settings, session=session), client, session)


@pytest.fixture(params=ALL_KINDS)
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aws_credentials: None,
    boto_session: boto3.session.Session,
) -> Iterator[Backend]:
    kind = request.param
    if kind == "local":
        yield make_backend(kind, local_settings(tmp_path), boto_session)
        return
    with s3_context(kind, request) as endpoint:
        yield make_backend(
            kind, s3_settings(tmp_path, endpoint, gateway_principal_arn=GATEWAY_ARN), boto_session
        )


@pytest.fixture(params=S3_KINDS)
def s3_backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aws_credentials: None,
    boto_session: boto3.session.Session,
) -> Iterator[Backend]:
    """An S3 store whose buckets keep the provisioned policy (the principal from STS)."""
    with s3_context(request.param, request) as endpoint:
        yield make_backend(
            request.param, s3_settings(tmp_path, endpoint), boto_session, keep_policy=True
        )


@pytest.fixture
def store(backend: Backend) -> ObjectStore:
    return backend.store
