"""The ``aws-kms`` custody backend: values encrypted by AWS KMS under the upload's context.

Every value is a KMS ``Encrypt`` of the secret (KMS takes up to 4096 bytes; identities
are under 100) with the encryption context ``{"upload", "artifact", "org"}``, so
KMS refuses to decrypt it for any other context, and KMS's own record of each
``Decrypt`` (CloudTrail) names the artifact: a second log, independent of the gateway's.

Two modes:

- **per-artifact keys** (the default): :meth:`KmsCustody.create` makes a KMS key for
  the artifact (``CreateKey``, tagged ``gateway:upload``, ``gateway:artifact``,
  ``gateway:org``); :meth:`KmsCustody.destroy` disables it at once and schedules its
  deletion after ``deletion_window_days`` (7-30, KMS's bounds). A disabled key decrypts
  nothing, so every copy of the value, in any backup, is useless from then on.
- **shared key**: every value under one key (``kms_key_id``). ``destroy`` destroys
  nothing: an old database backup still opens while that key lives and the gateway's
  credentials can use it. Only deleting the value shreds.

Before each ``Decrypt`` of a per-artifact value the key's state is read
(``DescribeKey``): a key that is disabled, pending deletion or gone raises
:class:`KeyDestroyed` without the value being sent; KMS's own refusals map the same way.

botocore logs request and response bodies at DEBUG, which for these calls hold the
secret; while this backend calls KMS, those records are dropped (:class:`_QuietBodies`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gateway.custody.base import (
    FORMAT_KMS,
    ContextMismatch,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    UnwrapFailed,
    check_ref,
    check_secret,
    frame_header,
    log_operation,
    split_blob,
)
from gateway.custody.settings import KMS_KEY_ARN, KMS_KEY_NAME, CustodySettings

PER_ARTIFACT = "aws-kms:key:"
SHARED = "aws-kms:shared:"
TAG_PREFIX = "gateway:"
DESTROYED_STATES = ("Disabled", "PendingDeletion", "PendingReplicaDeletion")
_REFUSED = ("InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException")
_GONE = ("DisabledException", "KMSInvalidStateException", "NotFoundException")
_BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.awsrequest")


class KmsCustody:
    """Custody in AWS KMS (or anything that speaks its API: moto, LocalStack)."""

    name = "aws-kms"

    def __init__(self, settings: CustodySettings, *, session: Any = None) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        self.per_artifact = settings.kms_per_artifact_keys
        self.destroys_keys = self.per_artifact
        self.shared_key = settings.kms_key_id
        self.region = settings.kms_region
        self.window_days = settings.kms_deletion_window_days
        config = BotoConfig(
            connect_timeout=settings.kms_timeout_seconds,
            read_timeout=settings.kms_timeout_seconds,
            retries={"mode": "standard", "max_attempts": settings.kms_max_attempts},
        )
        self.client: Any = (session or boto3.session.Session()).client(  # thread-safe
            "kms",
            region_name=settings.kms_region,
            endpoint_url=settings.kms_endpoint_url or None,
            config=config,
        )
        _QuietBodies.install()

    def __repr__(self) -> str:
        mode = "per-artifact keys" if self.per_artifact else f"shared key {self.shared_key}"
        return f"KmsCustody(region={self.region!r}, {mode})"

    # --- the interface ------------------------------------------------------------------

    def create(self, ctx: CustodyContext) -> KeyRef:
        if not self.per_artifact:
            return KeyRef(SHARED + self.shared_key)
        tags = [{"TagKey": TAG_PREFIX + k, "TagValue": v} for k, v in ctx.fields().items()]
        with self._call("CreateKey"):
            answer = self.client.create_key(
                Description=(
                    f"gateway custody key of upload {ctx.upload_id} "
                    f"(artifact {ctx.artifact_id}, org {ctx.org})"
                ),
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=[*tags, {"TagKey": TAG_PREFIX + "purpose", "TagValue": "custody"}],
            )
        ref = KeyRef(PER_ARTIFACT + answer["KeyMetadata"]["Arn"])
        log_operation("create", self.name, ctx, ref)
        return ref

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        check_secret(secret)
        key_id, per_artifact = self._key_id(ref)
        with self._call("Encrypt", key_id, per_artifact):
            answer = self.client.encrypt(
                KeyId=key_id, Plaintext=bytes(secret), EncryptionContext=ctx.fields()
            )
        return frame_header(FORMAT_KMS, ctx) + bytes(answer["CiphertextBlob"])

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        key_id, per_artifact = self._key_id(ref)
        _, body = split_blob(blob, FORMAT_KMS, ctx)
        if per_artifact:
            state = self._state(key_id, per_artifact)
            if state != "Enabled":
                raise KeyDestroyed(f"KMS key {key_id} is {state}")
        with self._call("Decrypt", key_id, per_artifact):
            answer = self.client.decrypt(
                CiphertextBlob=body, KeyId=key_id, EncryptionContext=ctx.fields()
            )
        log_operation("unwrap", self.name, ctx, ref)
        return bytes(answer["Plaintext"])

    def destroy(self, ctx: CustodyContext, ref: KeyRef) -> bool:
        key_id, per_artifact = self._key_id(ref)
        if not per_artifact:
            return False  # the shared key is never destroyed; deleting the value shreds
        try:
            state, bare_id = self._describe(key_id, per_artifact)
        except KeyDestroyed:
            return False
        if state in ("PendingDeletion", "PendingReplicaDeletion"):
            return False
        self._check_owner(ctx, key_id)
        if state != "Disabled":  # at once: the deletion itself only follows the window
            with self._call("DisableKey", key_id, per_artifact):
                self.client.disable_key(KeyId=bare_id)
        with self._call("ScheduleKeyDeletion", key_id, per_artifact):
            self.client.schedule_key_deletion(KeyId=bare_id, PendingWindowInDays=self.window_days)
        log_operation("destroy", self.name, ctx, ref)
        return True

    def check(self) -> None:
        if self.per_artifact:
            with self._call("ListKeys"):
                self.client.list_keys(Limit=1)
            return
        state = self._state(self.shared_key, False)
        if state != "Enabled":
            raise CustodyUnavailable(f"the shared KMS key {self.shared_key} is {state}")

    def close(self) -> None:
        self.client.close()

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _key_id(ref: KeyRef) -> tuple[str, bool]:
        """``(key id, per-artifact?)``: a reference names its own key, whatever the mode now."""
        shared = isinstance(ref, str) and ref.startswith(SHARED)
        key_id = check_ref(ref, SHARED if shared else PER_ARTIFACT)
        if not (KMS_KEY_NAME if shared else KMS_KEY_ARN).fullmatch(key_id):
            raise UnwrapFailed(f"key reference {ref[:120]!r} does not name a KMS key")
        return key_id, not shared

    def _state(self, key_id: str, per_artifact: bool) -> str:
        return self._describe(key_id, per_artifact)[0]

    def _describe(self, key_id: str, per_artifact: bool) -> tuple[str, str]:
        """``(KeyState, KeyId)``: the bare id, which every KMS operation accepts."""
        with self._call("DescribeKey", key_id, per_artifact):
            answer = self.client.describe_key(KeyId=key_id)
        meta = answer["KeyMetadata"]
        return str(meta["KeyState"]), str(meta["KeyId"])

    def _check_owner(self, ctx: CustodyContext, key_id: str) -> None:
        """Refuse to destroy a key whose tags name another artifact (a rewritten reference)."""
        with self._call("ListResourceTags", key_id, True):
            answer = self.client.list_resource_tags(KeyId=key_id)
        tags = {t["TagKey"]: t["TagValue"] for t in answer.get("Tags", [])}
        for field, value in ctx.fields().items():
            if tags.get(TAG_PREFIX + field) != value:
                raise ContextMismatch(
                    f"KMS key {key_id} is tagged for {field} "
                    f"{tags.get(TAG_PREFIX + field)!r}, not {value!r}; not destroyed"
                )

    @contextmanager
    def _call(self, operation: str, key_id: str = "", per_artifact: bool = False) -> Iterator[None]:
        """Map botocore's failures to the custody errors, with the KMS bodies kept out of logs."""
        from botocore.exceptions import BotoCoreError, ClientError

        what = f"KMS {operation}" + (f" on {key_id}" if key_id else "")
        try:
            with _QuietBodies.active():
                yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if operation == "Decrypt" and code in _REFUSED:
                raise UnwrapFailed(
                    f"{what} refused the value ({code}): tampered, for another context or "
                    "another key, or the gateway may not use kms:Decrypt on this key"
                ) from None
            if code in _GONE and per_artifact:
                raise KeyDestroyed(f"{what}: {code}") from None
            raise CustodyUnavailable(f"{what} failed: {code}") from None
        except BotoCoreError as exc:
            raise CustodyUnavailable(f"{what} failed: {type(exc).__name__}") from None


class _QuietBodies(logging.Filter):
    """Drops botocore's DEBUG body records on a thread while it is inside a custody call."""

    _state = threading.local()
    _installed = False
    _lock = threading.Lock()

    @classmethod
    def install(cls) -> None:
        with cls._lock:
            if not cls._installed:
                for name in _BODY_LOGGERS:
                    logging.getLogger(name).addFilter(cls())
                cls._installed = True

    @classmethod
    @contextmanager
    def active(cls) -> Iterator[None]:
        previous = getattr(cls._state, "on", False)
        cls._state.on = True
        try:
            yield
        finally:
            cls._state.on = previous

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self._state, "on", False)
