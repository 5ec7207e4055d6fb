"""The ``aws-kms`` custody backend: values encrypted by AWS KMS under the upload's context.

Every value is a KMS ``Encrypt`` of the secret (KMS takes up to 4096 bytes; identities
are under 100) with the encryption context ``{"upload", "artifact", "org"}``, so
KMS refuses to decrypt it for any other context, and KMS's own record of each
``Decrypt`` (CloudTrail) names the artifact: a second log, independent of the gateway's.

Two modes, chosen by configuration (``kms_per_artifact_keys``), never by a reference:

- **per-artifact keys** (the default): :meth:`KmsCustody.create` makes a KMS key for
  the artifact (``CreateKey``, tagged ``gateway:upload``, ``gateway:artifact``,
  ``gateway:org``) and names it with the alias ``<kms_alias_prefix><upload id>``
  (``CreateAlias``; a ``.`` in the id becomes ``/``, which no id holds). Every operation
  finds the key through that alias (``DescribeKey``), never through the stored reference,
  which is only compared with the key found. :meth:`KmsCustody.destroy` checks the key's
  tags against the context, disables it at once and schedules its deletion after
  ``deletion_window_days`` (7-30, KMS's bounds). A disabled key decrypts nothing, so every
  copy of the value, in any backup, is useless from then on.
- **shared key**: every value under one key (``kms_key_id``); the only reference accepted
  is ``aws-kms:shared:<kms_key_id>``. ``destroy`` destroys nothing: an old database backup
  still opens while that key lives and the gateway's credentials can use it. Only deleting
  the value shreds. Values of one mode do not unwrap in the other.

Before each ``Decrypt`` of a per-artifact value the key's state is read (the same
``DescribeKey``): a key that is disabled, pending deletion or gone raises
:class:`KeyDestroyed` without the value being sent; KMS's own refusals map the same way.

botocore logs request and response bodies at DEBUG, which for these calls hold the
secret; while this backend calls KMS, those records are dropped (:class:`_QuietBodies`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gateway.custody.base import (
    FORMAT_KMS,
    ContextMismatch,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    UnwrapFailed,
    check_reference,
    check_secret,
    frame_header,
    log_operation,
    split_blob,
)
from gateway.custody.settings import CustodySettings

PER_ARTIFACT = "aws-kms:key:"
SHARED = "aws-kms:shared:"
TAG_PREFIX = "gateway:"
PENDING_DELETION = ("PendingDeletion", "PendingReplicaDeletion")
_REFUSED = ("InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException")
_GONE = ("DisabledException", "KMSInvalidStateException", "NotFoundException")
_BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.awsrequest")


@dataclass(frozen=True)
class _Found:
    """The per-artifact key an alias names: its state, bare id and ARN."""

    state: str
    key_id: str
    arn: str

    @property
    def ref(self) -> KeyRef:
        return KeyRef(PER_ARTIFACT + self.arn)


class KmsCustody:
    """Custody in AWS KMS (or anything that speaks its API: moto, LocalStack)."""

    name = "aws-kms"

    def __init__(self, settings: CustodySettings, *, session: Any = None) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        self.per_artifact = settings.kms_per_artifact_keys
        self.destroys_keys = self.per_artifact
        self.shared_key = settings.kms_key_id
        self.alias_prefix = settings.kms_alias_prefix
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
            return self._shared_ref()
        tags = [{"TagKey": TAG_PREFIX + k, "TagValue": v} for k, v in ctx.fields().items()]
        with self._call("CreateKey"):
            meta = self.client.create_key(
                Description=(
                    f"gateway custody key of upload {ctx.upload_id} "
                    f"(artifact {ctx.artifact_id}, org {ctx.org})"
                ),
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=[*tags, {"TagKey": TAG_PREFIX + "purpose", "TagValue": "custody"}],
            )["KeyMetadata"]
        self._name(ctx, str(meta["KeyId"]))
        ref = KeyRef(PER_ARTIFACT + meta["Arn"])
        log_operation("create", self.name, ctx, ref)
        return ref

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        check_secret(secret)
        key_id = self._usable(ctx, ref)
        with self._call("Encrypt", key_id, self.per_artifact):
            answer = self.client.encrypt(
                KeyId=key_id, Plaintext=bytes(secret), EncryptionContext=ctx.fields()
            )
        return frame_header(FORMAT_KMS, ctx) + bytes(answer["CiphertextBlob"])

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        _, body = split_blob(blob, FORMAT_KMS, ctx)
        key_id = self._usable(ctx, ref)
        with self._call("Decrypt", key_id, self.per_artifact):
            answer = self.client.decrypt(
                CiphertextBlob=body, KeyId=key_id, EncryptionContext=ctx.fields()
            )
        log_operation("unwrap", self.name, ctx, ref)
        return bytes(answer["Plaintext"])

    def destroy(self, ctx: CustodyContext, ref: KeyRef) -> bool:
        if not self.per_artifact:
            check_reference(ctx, ref, self._shared_ref())
            return False  # the shared key is never destroyed; deleting the value shreds
        found = self._find(ctx)
        if found is None or found.state in PENDING_DELETION:
            return False
        self._check_owner(ctx, found.key_id)
        if found.state != "Disabled":  # at once: the deletion itself only follows the window
            with self._call("DisableKey", found.arn, True):
                self.client.disable_key(KeyId=found.key_id)
        with self._call("ScheduleKeyDeletion", found.arn, True):
            self.client.schedule_key_deletion(
                KeyId=found.key_id, PendingWindowInDays=self.window_days
            )
        log_operation("destroy", self.name, ctx, found.ref)
        check_reference(ctx, ref, found.ref, destroyed=True)
        return True

    def check(self) -> None:
        if self.per_artifact:
            with self._call("ListKeys"):
                self.client.list_keys(Limit=1)
            return
        state = self._describe(self.shared_key, False).state
        if state != "Enabled":
            raise CustodyUnavailable(f"the shared KMS key {self.shared_key} is {state}")

    def close(self) -> None:
        self.client.close()

    # --- helpers ------------------------------------------------------------------------

    def alias(self, ctx: CustodyContext) -> str:
        """The alias naming ctx's key: KMS alias names hold no ``.``, and no id holds ``/``."""
        return self.alias_prefix + ctx.upload_id.replace(".", "/")

    def _shared_ref(self) -> KeyRef:
        return KeyRef(SHARED + self.shared_key)

    def _usable(self, ctx: CustodyContext, ref: KeyRef) -> str:
        """The key to use for ctx, after checking ``ref`` against it and, per artifact, its state."""
        if not self.per_artifact:
            check_reference(ctx, ref, self._shared_ref())
            return self.shared_key
        found = self._find(ctx)
        if found is None:
            raise KeyDestroyed(f"no KMS key has the alias {self.alias(ctx)}")
        check_reference(ctx, ref, found.ref)
        if found.state != "Enabled":
            raise KeyDestroyed(f"KMS key {found.arn} is {found.state}")
        return found.arn

    def _find(self, ctx: CustodyContext) -> _Found | None:
        """ctx's key, through its alias; None when KMS has no such alias (or key)."""
        try:
            return self._describe(self.alias(ctx), True)
        except KeyDestroyed:
            return None

    def _describe(self, key_id: str, per_artifact: bool) -> _Found:
        with self._call("DescribeKey", key_id, per_artifact):
            meta = self.client.describe_key(KeyId=key_id)["KeyMetadata"]
        return _Found(str(meta["KeyState"]), str(meta["KeyId"]), str(meta["Arn"]))

    def _name(self, ctx: CustodyContext, key_id: str) -> None:
        """Give a new key ctx's alias; if that fails, the key is scheduled for deletion."""
        from botocore.exceptions import ClientError

        try:
            with self._call("CreateAlias", key_id, True):
                try:
                    self.client.create_alias(AliasName=self.alias(ctx), TargetKeyId=key_id)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "AlreadyExistsException":
                        raise ValueError(
                            f"upload {ctx.upload_id} already has a custody key ({self.alias(ctx)})"
                        ) from None
                    raise
        except BaseException:
            with contextlib.suppress(Exception):  # an unnamed key is never used: do not keep it
                self.client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
            raise

    def _check_owner(self, ctx: CustodyContext, key_id: str) -> None:
        """Refuse to destroy a key whose tags name another artifact (an alias moved in KMS)."""
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
