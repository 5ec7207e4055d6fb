"""Where audit anchors go: a write-once location the operator cannot quietly rewrite.

The audit log publishes each signed checkpoint (and the entries and tiles it covers) here
under a name of its choosing: a file name, or a path of such names (``tile/0/x001/234``,
the C2SP tlog-tiles paths). A name is written once: publishing the same bytes again is a
no-op (a retry after a crash), publishing different bytes under a used name raises
:class:`AlreadyPublished`.

- ``local``: files in ``settings.audit_dir``, mode 0400, made by writing a temporary
  file and hard-linking it to its name (``link`` never replaces), fsynced.
- ``s3``: objects in ``settings.audit_bucket`` (provisioned with Object Lock), each put
  with ``If-None-Match: *`` and COMPLIANCE retention for ``audit_retention_days``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gateway.storage.base import InvalidKey, NotFound, StorageError, StorageSettings
from gateway.storage.local import private_dirs
from gateway.storage.s3 import error_code, make_client, wrap

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


class AlreadyPublished(StorageError):
    """A different document was already published under this name."""


@runtime_checkable
class AuditArchive(Protocol):
    def publish(self, name: str, data: bytes) -> None:
        """Write ``data`` under ``name`` for good (idempotent for identical bytes)."""
        ...

    def list_names(self) -> list[str]:
        """Every published name, sorted."""
        ...

    def get(self, name: str) -> bytes:
        """The bytes published under ``name``; :class:`NotFound` if none."""
        ...


def make_archive(
    settings: StorageSettings, *, session: boto3.session.Session | None = None
) -> AuditArchive:
    """The archive for ``settings.backend``: the audit bucket for ``s3``, else ``settings.audit_dir``."""
    if settings.backend == "s3":
        return S3AuditArchive(settings, session=session)
    return LocalAuditArchive(settings.audit_dir)


def check_name(name: str) -> str:
    """``name`` if every ``/``-separated part of it is A-Z a-z 0-9 . _ - without a leading dot."""
    if not all(_NAME.match(part) for part in name.split("/")):
        raise InvalidKey(
            f"invalid archive name {name!r}: expected parts of A-Z a-z 0-9 . _ - separated by /, "
            "none with a leading dot"
        )
    return name


def _is_name(name: str) -> bool:
    return all(_NAME.match(part) for part in name.split("/"))


class LocalAuditArchive:
    """Write-once files in one directory (mode 0700), each mode 0400."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def publish(self, name: str, data: bytes) -> None:
        target = self.folder / check_name(name)
        temp = self.folder / f".tmp-{secrets.token_hex(8)}"
        try:
            private_dirs(self.folder)
            _make_parents(self.folder, target)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, target)
            except FileExistsError:
                if target.read_bytes() != data:
                    raise AlreadyPublished(
                        f"{name} is already published with other content"
                    ) from None
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot publish {name} in {self.folder}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def list_names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        names = (p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*"))
        return sorted(n for n in names if _is_name(n) and (self.folder / n).is_file())

    def get(self, name: str) -> bytes:
        try:
            return (self.folder / check_name(name)).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"nothing published as {name}") from None


class S3AuditArchive:
    """Objects under Object Lock (COMPLIANCE) in the audit bucket."""

    def __init__(
        self, settings: StorageSettings, *, session: boto3.session.Session | None = None
    ) -> None:
        self.bucket = settings.audit_bucket
        self.prefix = settings.prefix
        self.retention = timedelta(days=settings.audit_retention_days)
        self.client = make_client(settings, session=session)

    def publish(self, name: str, data: bytes) -> None:
        key = self.prefix + check_name(name)
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=digest,
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=datetime.now(UTC) + self.retention,
            )
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise wrap(exc, f"cannot publish {name}") from exc
            if self.get(name) != data:
                raise AlreadyPublished(f"{name} is already published with other content") from None
        except BotoCoreError as exc:
            raise wrap(exc, f"cannot publish {name}") from exc

    def list_names(self) -> list[str]:
        names: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                names.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise wrap(exc, f"cannot list the audit bucket {self.bucket}") from exc
        return sorted(n for n in names if _is_name(n))

    def get(self, name: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + check_name(name))
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"nothing published as {name}") from None
            raise wrap(exc, f"cannot read {name}") from exc
        with contextlib.closing(answer["Body"]) as body:
            return bytes(body.read())


def _make_parents(folder: Path, target: Path) -> None:
    """The directories between ``folder`` and ``target`` (mode 0700), each made durable."""
    missing = [d for d in target.relative_to(folder).parents if not (folder / d).is_dir()]
    for d in reversed(missing):  # outermost first
        (folder / d).mkdir(mode=0o700, exist_ok=True)
        _fsync_dir((folder / d).parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
