"""The flows on the real custody backends: a SoftHSM2 token and moto's KMS as a server.

Upload, completion, request, approval and download run through the ``pkcs11`` and
``aws-kms`` backends; the withdrawal destroys the artifact's key in the backend, after
which nothing releases it, whatever the database still holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from flask.testing import FlaskClient

from gateway.config import Config
from gateway.custody import CustodyContext, KeyDestroyed, KeyRef
from gateway.models import Artifact, CustodyKey, Upload
from gateway.runtime import Runtime
from tests.api.conftest import Lab, lab
from tests.conftest import Principals, make_config
from tests.custody.hsm import SoftHsm
from tests.services.conftest import Evaluator, Shared, entries, evaluator, granted, shared

# The flow's fixtures, shared with the access tests; the token and the KMS server are
# this directory's own (one SoftHSM2 configuration per process).
__all__ = ["evaluator", "granted", "lab", "shared"]

PIN_ENV = "GATEWAY_TEST_PKCS11_PIN"


@pytest.fixture(params=["pkcs11", "aws-kms"])
def config(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Config:
    if request.param == "pkcs11":
        hsm: SoftHsm = request.getfixturevalue("softhsm")
        monkeypatch.setenv(PIN_ENV, hsm.pin)  # read once by the backend, then removed
        custody = {
            "custody.backend": "pkcs11",
            "custody.pkcs11_module": hsm.module,
            "custody.pkcs11_token_label": hsm.token,
            "custody.pkcs11_pin_env": PIN_ENV,
            "custody.pkcs11_key_label_prefix": f"flow-{tmp_path.name[-12:]}:",
        }
    else:
        request.getfixturevalue("aws_credentials")
        server = request.getfixturevalue("kms_server")
        custody = {"custody.backend": "aws-kms", "custody.kms_endpoint_url": server.url}
    return make_config(tmp_path, **custody)


def _context(rt: Runtime, artifact_id: str) -> tuple[CustodyContext, KeyRef, bytes]:
    with rt.db.session() as session:
        artifact = session.get(Artifact, artifact_id)
        key = session.get(CustodyKey, artifact.upload_id)
        upload = session.get(Upload, artifact.upload_id)
        ctx = CustodyContext(upload.id, key.artifact_id, upload.org)
        return ctx, KeyRef(key.key_ref), bytes(key.wrapped)


def test_the_story_runs_on_the_backend_and_a_shred_destroys_the_key_in_it(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict[str, Any],
    rt: Runtime,
    config: Config,
    request: pytest.FixtureRequest,
) -> None:
    aid = shared.artifact["id"]
    ctx, ref, wrapped = _context(rt, aid)
    assert ctx.artifact_id == aid  # the id reserved at creation is the artifact's
    backend = config.custody.backend
    assert rt.custody.name == backend
    created = entries(client, principals, action="upload.create")[-1]["details"]["custody"]
    assert created == {"backend": backend, "key": ref, "artifact": aid}
    got = evaluator.content(shared.artifact)
    assert got.status_code == 200 and evaluator.decrypt(got.data) == shared.plaintext
    released = entries(client, principals, action="key.release")
    assert released[-1]["details"]["custody"] == {"backend": backend, "key": ref}
    completed = entries(client, principals, action="upload.complete")[-1]["details"]
    assert completed["custody"] == {"backend": backend, "key": ref}

    assert client.delete(f"/v1/artifacts/{aid}", headers=lab.auth).status_code in (202, 204)
    with pytest.raises(KeyDestroyed):  # an old copy of the wrapped value opens nothing
        rt.custody.unwrap(ctx, ref, wrapped)
    if backend == "pkcs11":
        hsm: SoftHsm = request.getfixturevalue("softhsm")
        label = config.custody.pkcs11_key_label_prefix + ctx.upload_id
        assert hsm.labels(label) == 0  # the key object is gone from the token
    else:
        server = request.getfixturevalue("kms_server")
        kms = boto3.client("kms", region_name="us-east-1", endpoint_url=server.url)
        arn = ref.removeprefix("aws-kms:key:")  # the reference names the key by its ARN
        state = kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
        assert state == "PendingDeletion"
    assert evaluator.content(shared.artifact).status_code == 410
