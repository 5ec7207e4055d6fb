"""Fixtures for the custody contract tests: one backend per kind, each on real parts.

``local`` uses key files in a temporary directory; ``kms-inprocess`` moto inside this
process (``moto.mock_aws``); ``kms-server`` a ``moto_server`` process on 127.0.0.1 (its
request recorder on, writing into a temporary file, so tests can read what reached it);
``kms-shared`` the shared-key mode, in-process; ``pkcs11`` a SoftHSM2 token initialised
for this test process by ``softhsm2-util`` (see ``hsm.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws  # imported before any boto3 session: it hooks into botocore's handlers

from gateway.custody import Custody, CustodyContext, CustodySettings, make_custody
from tests.custody.hsm import SoftHsm, make_softhsm
from tests.storage.conftest import _free_port, aws_credentials, boto_session

__all__ = ["aws_credentials", "boto_session"]  # fixtures shared with the storage tests

DESTROYING = ["local", "kms-inprocess", "kms-server", "pkcs11"]
ALL_KINDS = [*DESTROYING, "kms-shared"]


def new_ctx(org: str = "lab-a") -> CustodyContext:
    unique = uuid.uuid4().hex[:20]
    return CustodyContext(upload_id=f"up_{unique}", artifact_id=f"art_{unique}", org=org)


@dataclass
class Backend:
    """A custody backend and what a test needs to look behind its interface."""

    kind: str
    custody: Custody
    client: Any = None  # a boto3 KMS client on the same endpoint (aws-kms kinds)
    hsm: SoftHsm | None = None
    hidden: list[str] = field(default_factory=list)  # strings that must never be logged


@dataclass(frozen=True)
class KmsServer:
    url: str
    recording: Path

    def moto_api(self, action: str) -> bytes:
        method = "GET" if action == "download-recording" else "POST"
        request = urllib.request.Request(f"{self.url}/moto-api/recorder/{action}", method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - local server
            return bytes(answer.read())


@pytest.fixture(scope="session")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmsServer]:
    """A ``moto_server`` on 127.0.0.1 for the whole session, recording into a temp file."""
    exe = Path(sys.executable).parent / "moto_server"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    recording = tmp_path_factory.mktemp("kms-server") / "recording.jsonl"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode} before answering on {url}")
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=1):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer on {url} within 30 s")
                time.sleep(0.1)
        yield KmsServer(url, recording)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """Two SoftHSM2 tokens for this test process, removed at the end of the session."""
    import shutil

    root = tmp_path_factory.mktemp("softhsm")
    before = os.environ.get("SOFTHSM2_CONF")
    try:
        yield make_softhsm(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before


def kms_settings(endpoint: str = "", **changes: Any) -> CustodySettings:
    return CustodySettings(
        backend="aws-kms", kms_region="us-east-1", kms_endpoint_url=endpoint, **changes
    )


def pkcs11_settings(hsm: SoftHsm, **changes: Any) -> CustodySettings:
    values: dict[str, Any] = {
        "backend": "pkcs11",
        "pkcs11_module": hsm.module,
        "pkcs11_token_label": hsm.token,
        "pkcs11_pin_env": "GATEWAY_TEST_PKCS11_PIN",
        "pkcs11_key_label_prefix": f"t{uuid.uuid4().hex[:8]}:",
    }
    values.update(changes)
    return CustodySettings(**values)


def _kms_backend(kind: str, session: boto3.session.Session, endpoint: str) -> Backend:
    client = session.client("kms", region_name="us-east-1", endpoint_url=endpoint or None)
    settings = kms_settings(endpoint)
    if kind == "kms-shared":
        key = client.create_key(Description="shared custody key")["KeyMetadata"]["Arn"]
        settings = kms_settings(endpoint, kms_per_artifact_keys=False, kms_key_id=key)
    return Backend(kind, make_custody(settings, keys_dir=Path("unused"), session=session), client)


@pytest.fixture
def make_backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aws_credentials: None,
    boto_session: boto3.session.Session,
) -> Iterator[Any]:
    """``make_backend(kind)``: a fresh backend; everything it opened is closed afterwards."""
    made: list[Backend] = []
    stack: list[Any] = []

    def make(kind: str) -> Backend:
        if kind == "local":
            settings = CustodySettings(backend="local")
            backend = Backend(kind, make_custody(settings, keys_dir=tmp_path / "keys"))
        elif kind == "kms-server":
            server = request.getfixturevalue("kms_server")
            backend = _kms_backend(kind, boto_session, server.url)
        elif kind.startswith("kms"):
            if not stack:
                stack.append(mock_aws())
                stack[-1].start()
            backend = _kms_backend(kind, boto_session, "")
        else:
            hsm = request.getfixturevalue("softhsm")
            environ = {"GATEWAY_TEST_PKCS11_PIN": hsm.pin}
            custody = make_custody(pkcs11_settings(hsm), keys_dir=tmp_path, environ=environ)
            backend = Backend(kind, custody, hsm=hsm, hidden=[hsm.pin])
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.custody.close()
    for mock in stack:
        mock.stop()


@pytest.fixture(params=ALL_KINDS)
def backend(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    """Every backend and mode, for what each of them promises."""
    return make_backend(request.param)  # type: ignore[no-any-return]


@pytest.fixture(params=DESTROYING)
def destroying(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    """The backends whose ``destroy`` makes every copy of a value useless."""
    return make_backend(request.param)  # type: ignore[no-any-return]
