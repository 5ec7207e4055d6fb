"""The ``s3`` backend: objects in an S3 bucket (AWS, MinIO, Ceph RGW, moto).

Parts go up with S3 multipart upload, each with its ``ChecksumSHA256`` so S3 itself
refuses a part whose bytes differ from the declared digest. The body is a
:class:`~gateway.storage.HashingReader` around the request stream: not seekable, its
length given as ``ContentLength``, so botocore streams it in small blocks instead of
buffering it. Three botocore details make that hold:

- SigV4 would hash the payload before sending (reading the whole body twice, which a
  network stream cannot do) whenever the endpoint is plain HTTP or no checksum header
  it recognises is set; the part client sets ``payload_signing_enabled=False``, so the
  request is signed with ``UNSIGNED-PAYLOAD`` and its integrity rests on
  ``ChecksumSHA256`` (and TLS in production).
- A retry would resend a half-consumed stream; the part client makes one attempt, and
  the uploader resends the part.
- The reader checks the digest before it hands out the last bytes, so even a store that
  does not verify checksums never receives a complete wrong or short body: the request
  fails, the part is not stored, and an earlier upload of that part number stays.

Deleting an object removes every version and delete marker, so a shredded artifact's
ciphertext is really gone from a versioned bucket.

A request S3 refuses for want of permission (403: the credentials, or a bucket policy
that denies the gateway) raises :class:`AccessDenied`, whose message names the cause,
apart from the store simply failing. A plain ``http://`` endpoint is refused at init
unless ``storage.allow_insecure_endpoint`` is set (:mod:`gateway.storage.provision`),
and every store made for one logs a warning.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.storage.base import (
    CHUNK,
    AccessDenied,
    HashingReader,
    InvalidPart,
    NotFound,
    StorageError,
    StorageSettings,
    StoredPart,
    UploadNotFound,
    check_key,
    check_part,
)

log = logging.getLogger("gateway.storage.s3")

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
}  # and any other answer with HTTP status 403
_BAD_PARTS = {
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
}  # BadDigest: corrupted in transit, a store error


def client_config(settings: StorageSettings, *, streaming: bool = False) -> Config:
    """botocore settings: path-style addressing for custom endpoints; see the module note for ``streaming``."""
    s3: dict[str, Any] = {"addressing_style": "path" if settings.endpoint_url else "auto"}
    if streaming:
        s3["payload_signing_enabled"] = False
        return Config(s3=s3, retries={"total_max_attempts": 1}, signature_version="s3v4")
    return Config(s3=s3, retries={"mode": "standard", "max_attempts": 4}, signature_version="s3v4")


def make_session(settings: StorageSettings) -> boto3.session.Session:
    """A boto3 session (credentials from the usual chain); share one: each parses the API models."""
    return boto3.session.Session(region_name=settings.region)


def make_client(
    settings: StorageSettings,
    *,
    streaming: bool = False,
    session: boto3.session.Session | None = None,
) -> Any:
    """An S3 client for ``settings``."""
    session = session or make_session(settings)
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        config=client_config(settings, streaming=streaming),
    )


def is_insecure(endpoint_url: str | None) -> bool:
    """Whether requests to ``endpoint_url`` travel without TLS (``None``: AWS, over TLS)."""
    return bool(endpoint_url) and not str(endpoint_url).lower().startswith("https://")


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_denied(exc: BaseException) -> bool:
    """Whether ``exc`` is S3 refusing permission (an access error code, or any 403)."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in _DENIED or status == 403


def wrap(exc: BaseException, what: str) -> StorageError:
    """A :class:`StorageError` describing a botocore failure; :class:`AccessDenied` for a 403."""
    if isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message", "")
        said = f"S3 said {error_code(exc)}: {message}" if message else f"S3 said {error_code(exc)}"
        if is_denied(exc):
            return AccessDenied(
                f"{what}: the object store denied the gateway access ({said}); check the "
                "gateway's credentials and the bucket policy (storage.policy_template, "
                "storage.allow_insecure_endpoint)"
            )
        return StorageError(f"{what}: {said}")
    return StorageError(f"{what}: {exc}")


class S3Store:
    """Objects in ``settings.bucket`` under ``settings.prefix``."""

    def __init__(
        self, settings: StorageSettings, *, session: boto3.session.Session | None = None
    ) -> None:
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        if is_insecure(settings.endpoint_url):
            log.warning(
                "object store endpoint %s is not TLS (storage.allow_insecure_endpoint): "
                "requests and presigned URLs travel in the clear",
                settings.endpoint_url,
            )
        session = session or make_session(settings)
        self.client = make_client(settings, session=session)
        self.part_client = make_client(settings, streaming=True, session=session)

    # --- uploads ----------------------------------------------------------------------

    def begin_upload(self, key: str) -> str:
        try:
            answer = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self._full(key), ChecksumAlgorithm="SHA256"
            )
        except (BotoCoreError, ClientError) as exc:
            raise wrap(exc, f"cannot begin an upload of {key}") from exc
        return str(answer["UploadId"])

    def put_part(
        self,
        key: str,
        handle: str,
        number: int,
        offset: int,
        length: int,
        stream: BinaryIO,
        sha256_hex: str,
    ) -> StoredPart:
        digest = check_part(number, offset, length, sha256_hex)
        reader = HashingReader(stream, number, length, digest)
        try:
            answer = self.part_client.upload_part(
                Bucket=self.bucket,
                Key=self._full(key),
                UploadId=handle,
                PartNumber=number,
                Body=reader,
                ContentLength=length,
                ChecksumSHA256=_b64(digest),
            )
        except StorageError:
            raise
        except Exception as exc:
            if reader.failure is not None:
                raise reader.failure  # noqa: B904 - keeps the cause it was raised with
            if error_code(exc) == "NoSuchUpload":
                raise UploadNotFound(f"no upload {handle!r} in progress for {key}") from None
            if error_code(exc) in _BAD_PARTS:
                raise InvalidPart(f"part {number}: S3 refused it: {error_code(exc)}") from exc
            raise wrap(exc, f"cannot store part {number} of {key}") from exc
        if reader.received != length:
            raise StorageError(
                f"part {number}: S3 answered after {reader.received} of {length} bytes"
            )
        return StoredPart(number=number, size=length, sha256=digest, etag=str(answer["ETag"]))

    def stored_parts(self, key: str, handle: str) -> list[StoredPart]:
        found: list[StoredPart] = []
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=self._full(key), UploadId=handle
            )
            for page in pages:
                for p in page.get("Parts", []):
                    sha = (
                        base64.b64decode(p["ChecksumSHA256"]).hex()
                        if p.get("ChecksumSHA256")
                        else ""
                    )
                    found.append(
                        StoredPart(int(p["PartNumber"]), int(p["Size"]), sha, str(p["ETag"]))
                    )
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) == "NoSuchUpload":
                raise UploadNotFound(f"no upload {handle!r} in progress for {key}") from None
            raise wrap(exc, f"cannot list the parts of {key}") from exc
        return sorted(found, key=lambda p: p.number)

    def complete_upload(
        self, key: str, handle: str, parts: list[StoredPart], total_size: int
    ) -> None:
        if sum(p.size for p in parts) != total_size:
            raise InvalidPart(
                f"the parts hold {sum(p.size for p in parts)} bytes, expected {total_size}"
            )
        listed = [
            {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": _b64(p.sha256)}
            for p in sorted(parts, key=lambda p: p.number)
        ]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._full(key),
                UploadId=handle,
                MultipartUpload={"Parts": listed},
            )
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) == "NoSuchUpload":
                raise UploadNotFound(f"no upload {handle!r} in progress for {key}") from None
            if error_code(exc) in _BAD_PARTS:
                raise InvalidPart(f"S3 refused the parts of {key}: {error_code(exc)}") from exc
            raise wrap(exc, f"cannot complete the upload of {key}") from exc
        stored = self.size(key)
        if stored != total_size:
            self.delete(key)
            raise InvalidPart(
                f"the completed object {key} holds {stored} bytes, expected {total_size}"
            )

    def abort_upload(self, key: str, handle: str) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._full(key), UploadId=handle
            )
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) not in ("NoSuchUpload", "404"):
                raise wrap(exc, f"cannot abort the upload of {key}") from exc

    def cleanup_stale_uploads(self, older_than: datetime) -> int:
        cutoff = older_than if older_than.tzinfo else older_than.replace(tzinfo=UTC)
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
        except (BotoCoreError, ClientError) as exc:
            raise wrap(exc, "cannot clean up stale uploads") from exc
        return removed

    # --- objects ----------------------------------------------------------------------

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        start = max(start, 0)
        if end is not None and end <= start:
            self.size(key)
            return iter(())
        ranged = start > 0 or end is not None
        extra = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if ranged else {}
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._full(key), **extra)
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) in _MISSING:
                raise NotFound(f"no object {key}") from None
            if error_code(exc) == "InvalidRange":
                return iter(())
            raise wrap(exc, f"cannot read {key}") from exc
        return _chunks(answer["Body"])

    def read_prefix(self, key: str, n: int) -> bytes:
        return b"".join(self.open_read(key, 0, n))

    def size(self, key: str) -> int:
        try:
            return int(
                self.client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"]
            )
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) in _MISSING:
                raise NotFound(f"no object {key}") from None
            raise wrap(exc, f"cannot look up {key}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> bool:
        full = self._full(key)
        try:
            versions: list[dict[str, str]] = []
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    if v["Key"] == full:
                        versions.append({"Key": full, "VersionId": v["VersionId"]})
            for i in range(0, len(versions), 1000):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": versions[i : i + 1000], "Quiet": True}
                )
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    kind = AccessDenied if first.get("Code") in _DENIED else StorageError
                    raise kind(
                        f"cannot delete {key}: S3 said {first.get('Code')}: {first.get('Message')}"
                    )
        except (BotoCoreError, ClientError) as exc:
            raise wrap(exc, f"cannot delete {key}") from exc
        return bool(versions)

    def presign_get(self, key: str, expires_in_seconds: int) -> str | None:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._full(key)},
                ExpiresIn=expires_in_seconds,
            )
        )

    def check_writable(self) -> None:
        probe = f"{self.prefix}.probe/{secrets.token_hex(8)}"
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe")
            version = answer.get("VersionId")
            extra = {"VersionId": version} if version else {}
            self.client.delete_object(Bucket=self.bucket, Key=probe, **extra)
        except (BotoCoreError, ClientError) as exc:
            raise wrap(exc, f"bucket {self.bucket} is not writable") from exc

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    except BotoCoreError as exc:  # the connection broke mid-object
        raise StorageError(f"reading an object broke off: {exc}") from exc
    finally:
        body.close()


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
