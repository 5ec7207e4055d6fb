"""The ``aws-kms`` backend: the encryption context reaches KMS, keys are tagged and destroyed."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from gateway.custody import (
    CustodyUnavailable,
    KeyDestroyed,
    ReferenceMismatch,
    UnwrapFailed,
    make_custody,
)
from gateway.custody.kms import KmsCustody
from tests.custody.conftest import Backend, KmsServer, kms_settings, new_ctx
from tests.custody.test_contract import header_length, sealed

SECRET = b"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


@pytest.fixture(params=["kms-inprocess", "kms-server"])
def kms(request: pytest.FixtureRequest, make_backend: Any) -> Backend:
    return make_backend(request.param)  # type: ignore[no-any-return]


def record_calls(custody: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every KMS operation the backend's client sends, with its parameters."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    custody.client.meta.events.register("provide-client-params.kms", hook)
    return calls


def test_every_encrypt_and_decrypt_carries_the_artifacts_context(kms: Backend) -> None:
    calls = record_calls(kms.custody)
    ctx, ref, blob = sealed(kms.custody, SECRET)
    kms.custody.unwrap(ctx, ref, blob)

    expected = {"upload": ctx.upload_id, "artifact": ctx.artifact_id, "org": ctx.org}
    sent = {name: params for name, params in calls if name in ("Encrypt", "Decrypt")}
    assert set(sent) == {"Encrypt", "Decrypt"}
    for params in sent.values():
        assert params["EncryptionContext"] == expected
        assert params["KeyId"] == ref.removeprefix("aws-kms:key:")


def test_the_kms_server_receives_the_context_with_every_decrypt(
    make_backend: Any, kms_server: KmsServer
) -> None:
    backend = make_backend("kms-server")
    ctx, ref, blob = sealed(backend.custody, SECRET)
    kms_server.moto_api("reset-recording")
    kms_server.moto_api("start-recording")
    try:
        backend.custody.unwrap(ctx, ref, blob)
    finally:
        kms_server.moto_api("stop-recording")

    received = []
    for line in kms_server.moto_api("download-recording").decode().splitlines():
        entry = json.loads(line)
        body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"]
        target = {k.lower(): v for k, v in entry["headers"].items()}.get("x-amz-target")
        received.append((target, json.loads(body)))
    decrypts = [body for target, body in received if target == "TrentService.Decrypt"]
    assert len(decrypts) == 1
    assert decrypts[0]["EncryptionContext"] == ctx.fields()


def test_kms_itself_refuses_the_ciphertext_under_another_context(kms: Backend) -> None:
    ctx, ref, blob = sealed(kms.custody, SECRET)
    body = blob[header_length(blob) :]
    key = ref.removeprefix("aws-kms:key:")

    for field in ("upload", "artifact", "org"):
        other = {**ctx.fields(), field: "someone-else"}
        with pytest.raises(ClientError, match="InvalidCiphertext"):
            kms.client.decrypt(CiphertextBlob=body, KeyId=key, EncryptionContext=other)
    plain = kms.client.decrypt(CiphertextBlob=body, KeyId=key, EncryptionContext=ctx.fields())
    assert plain["Plaintext"] == SECRET


def test_each_artifacts_key_is_tagged_with_its_upload_artifact_and_org(kms: Backend) -> None:
    ctx = new_ctx()
    key = kms.custody.create(ctx).removeprefix("aws-kms:key:")

    tags = {t["TagKey"]: t["TagValue"] for t in kms.client.list_resource_tags(KeyId=key)["Tags"]}
    assert tags == {
        "gateway:upload": ctx.upload_id,
        "gateway:artifact": ctx.artifact_id,
        "gateway:org": ctx.org,
        "gateway:purpose": "custody",
    }
    meta = kms.client.describe_key(KeyId=key)["KeyMetadata"]
    assert ctx.upload_id in meta["Description"] and meta["KeyUsage"] == "ENCRYPT_DECRYPT"


@pytest.mark.parametrize("window", [7, 30])
def test_destroy_disables_the_key_at_once_then_schedules_its_deletion(
    window: int, boto_session: boto3.session.Session, make_backend: Any
) -> None:
    make_backend("kms-inprocess")  # starts moto in this process
    custody = make_custody(
        kms_settings(kms_deletion_window_days=window), keys_dir=Path("unused"), session=boto_session
    )
    ctx, ref, _ = sealed(custody, SECRET)
    calls = record_calls(custody)

    assert custody.destroy(ctx, ref) is True

    names = [name for name, _ in calls]
    assert names.index("DisableKey") < names.index("ScheduleKeyDeletion")
    assert dict(calls)["ScheduleKeyDeletion"]["PendingWindowInDays"] == window
    assert isinstance(custody, KmsCustody)
    meta = custody.client.describe_key(KeyId=ref.removeprefix("aws-kms:key:"))["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    due = datetime.now(UTC) + timedelta(days=window)
    assert abs(meta["DeletionDate"] - due) < timedelta(hours=1)
    custody.close()


def test_a_disabled_key_unwraps_nothing_and_destroy_finishes_the_job(kms: Backend) -> None:
    ctx, ref, blob = sealed(kms.custody, SECRET)
    key = ref.removeprefix("aws-kms:key:")
    kms.client.disable_key(KeyId=kms.client.describe_key(KeyId=key)["KeyMetadata"]["KeyId"])

    with pytest.raises(KeyDestroyed, match="Disabled"):
        kms.custody.unwrap(ctx, ref, blob)
    assert kms.custody.destroy(ctx, ref) is True
    assert kms.client.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"


# moto decrypts under a disabled key; AWS answers with these codes, so they are injected here.
@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("DisabledException", KeyDestroyed),
        ("KMSInvalidStateException", KeyDestroyed),
        ("NotFoundException", KeyDestroyed),
        ("InvalidCiphertextException", UnwrapFailed),
        ("IncorrectKeyException", UnwrapFailed),
        ("ThrottlingException", CustodyUnavailable),
        ("KMSInternalException", CustodyUnavailable),
    ],
)
def test_kms_refusals_of_a_decrypt_map_to_the_custody_errors(
    aws_credentials: None, boto_session: boto3.session.Session, code: str, error: type
) -> None:
    custody = make_custody(
        kms_settings(kms_max_attempts=1), keys_dir=Path("unused"), session=boto_session
    )
    assert isinstance(custody, KmsCustody)
    ctx = new_ctx()
    arn = "arn:aws:kms:us-east-1:123456789012:key/0f5c1a4e-0000-4000-8000-000000000000"
    blob = bytes([0x03]) + len(ctx.canonical()).to_bytes(2, "big") + ctx.canonical() + b"x" * 40
    with Stubber(custody.client) as stub:
        stub.add_response(
            "describe_key",
            {"KeyMetadata": {"KeyId": arn[-36:], "Arn": arn, "KeyState": "Enabled"}},
        )
        stub.add_client_error("decrypt", service_error_code=code, http_status_code=400)
        with pytest.raises(error) as raised:
            custody.unwrap(ctx, f"aws-kms:key:{arn}", blob)  # type: ignore[arg-type]
    assert code in str(raised.value)


def test_the_shared_key_mode_destroys_nothing_so_old_copies_still_open(
    make_backend: Any,
) -> None:
    shared = make_backend("kms-shared")
    assert shared.custody.destroys_keys is False
    ctx, ref, blob = sealed(shared.custody, SECRET)
    other = shared.custody.create(new_ctx())
    assert ref == other and ref.startswith("aws-kms:shared:")

    assert shared.custody.destroy(ctx, ref) is False

    # What the README says of this mode: a backup of the value opens while the key lives.
    assert shared.custody.unwrap(ctx, ref, blob) == SECRET
    key = ref.removeprefix("aws-kms:shared:")
    assert shared.client.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_an_unreachable_kms_is_unavailable_within_the_timeout(
    aws_credentials: None, boto_session: boto3.session.Session
) -> None:
    from tests.storage.conftest import _free_port

    settings = kms_settings(
        f"http://127.0.0.1:{_free_port()}", kms_timeout_seconds=2, kms_max_attempts=1
    )
    custody = make_custody(settings, keys_dir=Path("unused"), session=boto_session)
    started = time.monotonic()
    with pytest.raises(CustodyUnavailable, match="KMS ListKeys failed"):
        custody.check()
    with pytest.raises(CustodyUnavailable, match="KMS CreateKey failed"):
        custody.create(new_ctx())
    assert time.monotonic() - started < 10


def test_botocore_bodies_are_kept_out_of_the_log_only_during_custody_calls(
    kms: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx, ref, blob = sealed(kms.custody, SECRET)
    kms.custody.unwrap(ctx, ref, blob)
    quiet = [r for r in caplog.records if r.name in ("botocore.endpoint", "botocore.parsers")]
    assert quiet == []

    kms.client.list_keys(Limit=1)  # the same loggers still work for everything else
    assert any(r.name == "botocore.endpoint" for r in caplog.records)


def test_each_artifacts_key_is_found_through_the_alias_of_its_upload(kms: Backend) -> None:
    assert isinstance(kms.custody, KmsCustody)
    ctx = dataclasses.replace(new_ctx(), upload_id="up.dotted.id")  # ids may hold a "."
    ref = kms.custody.create(ctx)
    alias = "alias/gateway-custody/up/dotted/id"

    meta = kms.client.describe_key(KeyId=alias)["KeyMetadata"]
    assert ref == "aws-kms:key:" + meta["Arn"]
    blob = kms.custody.wrap(ctx, ref, SECRET)
    assert kms.custody.unwrap(ctx, ref, blob) == SECRET
    assert kms.custody.destroy(ctx, ref) is True
    assert kms.client.describe_key(KeyId=alias)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_the_shared_spelling_of_a_per_artifact_key_is_no_way_around_its_destruction(
    kms: Backend,
) -> None:
    """A reference rewritten to aws-kms:shared:<the same ARN> once skipped the key's state."""
    ctx, ref, blob = sealed(kms.custody, SECRET)
    shared = ref.replace("aws-kms:key:", "aws-kms:shared:")
    key = ref.removeprefix("aws-kms:key:")

    with pytest.raises(ReferenceMismatch):
        kms.custody.unwrap(ctx, shared, blob)  # type: ignore[arg-type]
    with pytest.raises(ReferenceMismatch, match="destroyed all the same"):
        kms.custody.destroy(ctx, shared)  # type: ignore[arg-type]

    meta = kms.client.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    with pytest.raises(KeyDestroyed):
        kms.custody.unwrap(ctx, ref, blob)  # the backup from before the shred


def test_the_shared_key_mode_accepts_only_the_configured_key(make_backend: Any) -> None:
    shared = make_backend("kms-shared")
    ctx, ref, blob = sealed(shared.custody, SECRET)
    other = shared.client.create_key(Description="another key")["KeyMetadata"]["Arn"]
    per_artifact = "aws-kms:key:" + ref.removeprefix("aws-kms:shared:")
    for bad in ("aws-kms:shared:" + other, per_artifact):
        with pytest.raises(ReferenceMismatch):
            shared.custody.unwrap(ctx, bad, blob)
        with pytest.raises(ReferenceMismatch):
            shared.custody.destroy(ctx, bad)
    assert shared.custody.unwrap(ctx, ref, blob) == SECRET


def test_a_second_create_for_an_upload_leaves_no_key_behind(kms: Backend) -> None:
    ctx, ref, blob = sealed(kms.custody, SECRET)
    before = {k["KeyId"] for k in kms.client.list_keys()["Keys"]}

    with pytest.raises(ValueError, match="already has a custody key"):
        kms.custody.create(ctx)

    made = {k["KeyId"] for k in kms.client.list_keys()["Keys"]} - before
    states = {kms.client.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] for k in made}
    assert states == {"PendingDeletion"}  # the key it made, unnamed, is on its way out
    assert kms.custody.unwrap(ctx, ref, blob) == SECRET
