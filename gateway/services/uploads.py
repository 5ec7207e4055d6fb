"""Resumable lab uploads: create, stream parts, resume, complete into an artifact, abort.

Each upload gets a fresh X25519 custody identity, kept only wrapped by the master key.
Parts stream to the object store while their SHA-256 is computed; the first bytes of
part 1 are kept (bounded) so completion can check the age header without reading the
store. Completion refuses with 422, naming what failed, and changes nothing when any
check fails.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import age, events
from gateway import manifest as manifests
from gateway.errors import (
    BadRequest,
    Conflict,
    DigestMismatch,
    Gone,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
)
from gateway.models import Artifact, CustodyKey, Org, SigningKey, Upload, UploadPart, new_id
from gateway.runtime import Gateway
from gateway.services.identity import Actor

log = logging.getLogger("gateway.uploads")

MIB = 1 << 20
MAX_PART_SIZE = 5 * 1024 * MIB  # S3's largest part
KINDS = ("weights", "credential")
# Custody key types: X25519 (every age release reads it) or the hybrid post-quantum one.
CUSTODY = {
    "x25519": ("X25519", "X25519Identity"),
    "mlkem768x25519": ("mlkem768x25519", "HybridIdentity"),
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_artifact_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("field 'name' must be a non-empty string")
    if len(name) > 255:
        raise BadRequest("field 'name' must be at most 255 characters")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise BadRequest("field 'name' must not contain path separators or be '.' or '..'")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise BadRequest("field 'name' must not contain control characters")
    return name


def choose_part_size(gw: Gateway, size: int | None) -> int:
    cfg = gw.config.uploads
    part = cfg.default_part_size_mib * MIB
    if size is not None:
        needed = math.ceil(size / cfg.max_parts / MIB) * MIB
        part = max(part, needed, cfg.min_part_size_mib * MIB)
    if part > MAX_PART_SIZE:
        raise Unprocessable(
            f"an artifact of {size} bytes does not fit in {cfg.max_parts} parts of at most 5 GiB"
        )
    return part


def create(gw: Gateway, session: Session, who: Actor, body: dict[str, Any]) -> Upload:
    name = check_artifact_name(body.get("name"))
    kind = body.get("kind")
    if kind not in KINDS:
        raise BadRequest('field \'kind\' must be "weights" or "credential"')
    share_with = body.get("share_with")
    if (
        not isinstance(share_with, list)
        or not share_with
        or not all(isinstance(s, str) for s in share_with)
    ):
        raise BadRequest("field 'share_with' must be a non-empty list of agency organisation names")
    for org_name in share_with:
        org = session.get(Org, org_name)
        if org is None or org.kind != "agency":
            raise BadRequest(f"share_with: {org_name!r} is not an agency organisation")
    description = body.get("description", "") or ""
    if not isinstance(description, str) or len(description) > 4096:
        raise BadRequest("field 'description' must be a string of at most 4096 characters")
    size = body.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise BadRequest("field 'size' must be a positive integer (the expected ciphertext size)")
    part_size = choose_part_size(gw, size)
    custody = body.get("recipient_type", "x25519")
    if custody not in CUSTODY:
        raise BadRequest(
            'field \'recipient_type\' must be "x25519" or "mlkem768x25519" (post-quantum hybrid)'
        )

    now = gw.now()
    upload_id = new_id("up")
    identity = getattr(age, CUSTODY[custody][1]).generate()
    object_key = f"artifacts/{upload_id}.age"
    handle = gw.store.begin_upload(object_key)
    upload = Upload(
        id=upload_id,
        org=who.org,
        principal_id=who.id,
        name=name,
        kind=kind,
        share_with=sorted(set(share_with)),
        description=description,
        expected_size=size,
        part_size=part_size,
        max_parts=gw.config.uploads.max_parts,
        recipient=str(identity.to_recipient()),
        state="open",
        object_key=object_key,
        store_handle=handle,
        created_at=now,
        expires_at=now + timedelta(hours=gw.config.uploads.open_ttl_hours),
    )
    session.add(upload)
    session.flush()  # the upload row first: the custody key refers to it
    session.add(
        CustodyKey(
            upload_id=upload_id,
            wrapped=gw.master_key.wrap(str(identity).encode(), upload_id),
            created_at=now,
        )
    )
    session.flush()
    events.record(
        gw,
        session,
        "upload.create",
        who,
        subject_org=who.org,
        details={"upload": upload_id, "name": name, "kind": kind, "share_with": upload.share_with},
    )
    return upload


def get_upload(session: Session, upload_id: str) -> Upload:
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound(f"upload {upload_id} was not found")
    return upload


def parts_of(session: Session, upload_id: str) -> list[UploadPart]:
    return list(
        session.scalars(
            select(UploadPart).where(UploadPart.upload_id == upload_id).order_by(UploadPart.number)
        )
    )


def require_open(gw: Gateway, upload: Upload) -> None:
    if upload.state == "completed":
        raise Conflict(f"upload {upload.id} is already completed (artifact {upload.artifact_id})")
    if upload.state != "open":
        raise Gone(f"upload {upload.id} is {upload.state.replace('_', ' ')}")
    if upload.expires_at <= gw.now():
        raise Gone(f"upload {upload.id} timed out at {upload.expires_at.isoformat()}Z")


def last_part_number(upload: Upload) -> int | None:
    if upload.expected_size is None:
        return None
    return max(1, math.ceil(upload.expected_size / upload.part_size))


def check_part_request(
    upload: Upload, number: int, length: int, sha256: str | None
) -> tuple[int, str]:
    if not 1 <= number <= upload.max_parts:
        raise BadRequest(f"part number must be between 1 and {upload.max_parts}")
    if sha256 is None or not _HEX64.match(sha256.lower()):
        raise BadRequest("header X-Content-SHA256 with the part's hex SHA-256 is required")
    if length > upload.part_size:
        raise PayloadTooLarge(
            f"a part may be at most part_size = {upload.part_size} bytes; this one is {length}"
        )
    if length == 0:
        raise BadRequest("a part must not be empty")
    last = last_part_number(upload)
    if last is not None and upload.expected_size is not None:
        if number > last:
            raise BadRequest(
                f"part {number} is past the last part ({last}) of the expected size {upload.expected_size}"
            )
        expected = (
            upload.part_size
            if number < last
            else upload.expected_size - (last - 1) * upload.part_size
        )
        if length != expected:
            raise BadRequest(
                f"part {number} must be exactly {expected} bytes; this one is {length}"
            )
    return length, sha256.lower()


def store_part(
    gw: Gateway, upload: Upload, number: int, length: int, sha256: str, stream: Any
) -> UploadPart:
    """Stream one part into the store; the database row is written only once it verified."""
    from gateway import storage

    head: Any = _HeadCapture(stream, gw.config.uploads.max_header_bytes) if number == 1 else stream
    offset = (number - 1) * upload.part_size
    try:
        stored = gw.store.put_part(
            upload.object_key, upload.store_handle, number, offset, length, head, sha256
        )
    except storage.DigestMismatch:
        raise DigestMismatch(
            f"part {number}: the body's SHA-256 does not match X-Content-SHA256; nothing was kept"
        ) from None
    except storage.TruncatedBody:
        raise BadRequest(
            f"part {number}: the body ended before Content-Length bytes; nothing was kept"
        ) from None
    except storage.UploadNotFound:
        raise Gone(f"upload {upload.id} is no longer open") from None
    except storage.StorageError as exc:
        raise store_unavailable(exc) from None
    now = gw.now()
    with events.fail_closed(gw) as session:
        row = session.get(UploadPart, (upload.id, number))
        if row is None:
            row = UploadPart(
                upload_id=upload.id,
                number=number,
                size=length,
                sha256=sha256,
                etag=stored.etag,
                created_at=now,
            )
            session.add(row)
        else:
            row.size, row.sha256, row.etag, row.created_at = length, sha256, stored.etag, now
        if number == 1:
            session.get(Upload, upload.id).header_prefix = head.captured  # type: ignore[union-attr]
    return row


class _HeadCapture:
    """Passes a stream through, keeping its first ``limit`` bytes (the age header)."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit, self._head = inner, limit, bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if len(self._head) < self.limit:
            self._head += data[: self.limit - len(self._head)]
        return data

    @property
    def captured(self) -> bytes:
        return bytes(self._head)


def _check_parts(upload: Upload, parts: list[UploadPart]) -> int:
    if not parts:
        raise Unprocessable("no parts have been uploaded")
    numbers = [p.number for p in parts]
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing:
        raise Unprocessable(f"parts are missing: {', '.join(map(str, missing[:20]))}")
    for p in parts[:-1]:
        if p.size != upload.part_size:
            raise Unprocessable(
                f"part {p.number} is {p.size} bytes; every part but the last must be {upload.part_size}"
            )
    total = sum(p.size for p in parts)
    if upload.expected_size is not None and total != upload.expected_size:
        raise Unprocessable(
            f"the parts hold {total} bytes but the upload declared size {upload.expected_size}"
        )
    return total


def parts_digest(parts: list[UploadPart]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(bytes.fromhex(p.sha256))
    return h.hexdigest()


def _check_manifest(upload: Upload, parts: list[UploadPart], total: int, manifest: Any) -> None:
    try:
        manifests.validate_manifest(manifest)
    except manifests.ManifestError as exc:
        raise Unprocessable(f"manifest: {exc}") from None
    expected = {
        "upload": upload.id,
        "name": upload.name,
        "kind": upload.kind,
    }
    for key, value in expected.items():
        if manifest[key] != value:
            raise Unprocessable(
                f"manifest: {key} is {manifest[key]!r} but the upload's is {value!r}"
            )
    c = manifest["ciphertext"]
    if c["size"] != total:
        raise Unprocessable(
            f"manifest: ciphertext.size is {c['size']} but the parts hold {total} bytes"
        )
    if c["part_size"] != upload.part_size:
        raise Unprocessable(
            f"manifest: ciphertext.part_size is {c['part_size']} but the upload's is {upload.part_size}"
        )
    if c["parts_sha256"] != parts_digest(parts):
        raise Unprocessable(
            "manifest: ciphertext.parts_sha256 does not match the SHA-256 of the stored parts' digests"
        )


def _check_signature(
    session: Session, upload: Upload, manifest: dict[str, Any], signature: Any
) -> str:
    if not isinstance(signature, str):
        raise Unprocessable(
            "field 'signature' must be the base64 Ed25519 signature of the canonical manifest"
        )
    keys = session.scalars(
        select(SigningKey).where(SigningKey.org == upload.org, SigningKey.revoked_at.is_(None))
    ).all()
    if not keys:
        raise Unprocessable(
            f"organisation {upload.org} has no registered signing key (PUT /v1/me/signing-key)"
        )
    for key in keys:
        try:
            manifests.verify_manifest(manifest, signature, key.public_key)
            return key.public_key
        except manifests.SignatureError:
            continue
    raise Unprocessable(
        f"signature: does not verify under any signing key registered by {upload.org}"
    )


def _check_header(gw: Gateway, session: Session, upload: Upload, total: int) -> int:
    import io

    if not upload.header_prefix:
        raise Unprocessable("age header: part 1 holds no data")
    try:
        header = age.read_header(
            io.BytesIO(upload.header_prefix), max_size=gw.config.uploads.max_header_bytes
        )
    except age.AgeError as exc:
        raise Unprocessable(f"age header: the upload is not an age v1 file: {exc}") from None
    identity = custody_identity(gw, session, upload.id)
    stanza_type = "X25519" if isinstance(identity, age.X25519Identity) else "mlkem768x25519"
    if not any(s.type == stanza_type for s in header.stanzas):
        raise Unprocessable(
            f"age header: no {stanza_type} stanza; encrypt to the upload's recipient {upload.recipient}"
        )
    try:
        age.unwrap_file_key(header, [identity])
    except age.NoIdentityMatchError:
        raise Unprocessable(
            f"age header: no stanza opens with the upload's key; encrypt to {upload.recipient}"
        ) from None
    except age.AgeError as exc:
        raise Unprocessable(f"age header: {exc}") from None
    header_size = len(header.raw)
    if total < header_size + 16 + 16:
        raise Unprocessable("age payload: the file ends before its first payload chunk")
    return header_size


def custody_identity(gw: Gateway, session: Session, upload_id: str) -> Any:
    row = session.get(CustodyKey, upload_id)
    if row is None:
        raise Gone("the custody key of this upload has been shredded")
    return age.parse_identity(gw.master_key.unwrap(row.wrapped, upload_id).decode())


def complete(gw: Gateway, upload_id: str, who: Actor, body: dict[str, Any]) -> Artifact:
    """Check everything, finish the stored object, then create the artifact atomically."""
    with gw.db.session() as session:
        upload = get_upload(session, upload_id)
        require_open(gw, upload)
        parts = parts_of(session, upload_id)
        total = _check_parts(upload, parts)
        manifest: dict[str, Any] = body.get("manifest")  # type: ignore[assignment]  # shape checked next
        _check_manifest(upload, parts, total, manifest)
        signing_key = _check_signature(session, upload, manifest, body.get("signature"))
        header_size = _check_header(gw, session, upload, total)
    stored_parts = [_stored(p) for p in parts]
    from gateway import storage

    try:
        gw.store.complete_upload(upload.object_key, upload.store_handle, stored_parts, total)
    except storage.UploadNotFound:
        raise Gone(f"upload {upload_id} is no longer open") from None
    except storage.InvalidPart as exc:
        raise Unprocessable(f"the object store does not hold the parts as listed: {exc}") from None
    except storage.StorageError as exc:
        raise store_unavailable(exc) from None
    try:
        with events.fail_closed(gw) as session:
            upload = get_upload(session, upload_id)
            require_open(gw, upload)
            now = gw.now()
            artifact = Artifact(
                id=new_id("art"),
                upload_id=upload.id,
                org=upload.org,
                name=upload.name,
                kind=upload.kind,
                description=upload.description,
                share_with=upload.share_with,
                size=total,
                header_size=header_size,
                object_key=upload.object_key,
                state="available",
                submitted_at=now,
                review_ends_at=now + timedelta(days=gw.config.access.review_window_days),
                manifest=manifest,
                signature=body["signature"],
                signing_key=signing_key,
            )
            session.add(artifact)
            upload.state, upload.ended_at, upload.artifact_id = "completed", now, artifact.id
            session.flush()
            events.record(
                gw,
                session,
                "upload.complete",
                who,
                artifact=artifact.id,
                subject_org=upload.org,
                details={
                    "upload": upload.id,
                    "size": total,
                    "parts_sha256": manifest["ciphertext"]["parts_sha256"],
                },
            )
    except Exception:
        _discard_object(gw, upload.object_key)
        raise
    return artifact


def store_unavailable(exc: Exception) -> ServiceUnavailable:
    """A store failure the client can retry: logged here, a 503 for the client."""
    log.error("object store failure: %s", exc)
    return ServiceUnavailable(
        "the object store is unavailable; nothing was changed, try again later"
    )


def _stored(p: UploadPart) -> Any:
    from gateway.storage import StoredPart

    return StoredPart(number=p.number, size=p.size, sha256=p.sha256, etag=p.etag)


def _discard_object(gw: Gateway, key: str) -> None:
    try:
        gw.store.delete(key)
    except Exception:  # noqa: BLE001 - best effort; the sweeper retries orphans
        log.warning("could not delete orphan object %s", key)


def abort(
    gw: Gateway,
    session: Session,
    upload: Upload,
    who: Actor | None,
    *,
    action: str = "upload.abort",
    state: str = "aborted",
) -> None:
    gw.store.abort_upload(upload.object_key, upload.store_handle)
    upload.state, upload.ended_at = state, gw.now()
    for row in parts_of(session, upload.id):
        session.delete(row)
    custody = session.get(CustodyKey, upload.id)
    if custody is not None:
        session.delete(custody)
    upload.header_prefix = None
    events.record(gw, session, action, who, subject_org=upload.org, details={"upload": upload.id})


def sweep_stale(gw: Gateway, now: datetime) -> int:
    """Abort open uploads past their deadline; returns how many were timed out."""
    with gw.db.session() as session:
        ids = list(
            session.scalars(
                select(Upload.id).where(Upload.state == "open", Upload.expires_at <= now)
            )
        )
    for upload_id in ids:
        with events.fail_closed(gw) as session:
            upload = get_upload(session, upload_id)
            if upload.state == "open":
                abort(gw, session, upload, None, action="upload.timeout", state="timed_out")
    return len(ids)


def upload_json(upload: Upload, parts: list[UploadPart]) -> dict[str, Any]:
    from gateway.clock import rfc3339

    return {
        "id": upload.id,
        "name": upload.name,
        "kind": upload.kind,
        "org": upload.org,
        "share_with": upload.share_with,
        "description": upload.description,
        "size": upload.expected_size,
        "recipient": upload.recipient,
        "recipient_type": "mlkem768x25519" if upload.recipient.startswith("age1pq1") else "x25519",
        "part_size": upload.part_size,
        "max_parts": upload.max_parts,
        "state": upload.state,
        "created_at": rfc3339(upload.created_at),
        "expires_at": rfc3339(upload.expires_at),
        "artifact": upload.artifact_id,
        "parts": [{"number": p.number, "size": p.size, "sha256": p.sha256} for p in parts],
    }
