"""Resumable lab uploads: create, stream parts, resume, complete into an artifact, abort.

Under gateway custody (the default) each upload gets a fresh custody identity (X25519,
or the post-quantum hybrid on request), kept only wrapped by the ``[custody]`` backend
under a key of the upload's own (:mod:`gateway.custody`). Under lab custody no identity
is made and the backend is not called: the lab encrypts to its own recipients
(:mod:`gateway.services.lab_custody`). Parts stream to the object store while
their SHA-256 is computed; the first bytes of part 1 are kept (bounded) so completion can
check the age header without reading the store. Completion refuses with 422, naming what
failed, and changes nothing when any check fails (:mod:`gateway.services.completion`).
"""

from __future__ import annotations

import logging
import math
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Protocol, cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway import age, authz, events, metrics
from gateway.caller import Actor, Caller
from gateway.custody import CustodyContext, KeyRef
from gateway.db import cas_update
from gateway.errors import (
    BadRequest,
    Conflict,
    Gone,
    InsufficientStorage,
    PayloadTooLarge,
    Unprocessable,
)
from gateway.models import (
    ArtifactKind,
    Custody,
    CustodyKey,
    CustodyType,
    Org,
    OrgKind,
    Upload,
    UploadPart,
    UploadState,
    new_id,
)
from gateway.runtime import Runtime
from gateway.services import quotas
from gateway.services.custody_keys import custody_errors, destroy_custody_key
from gateway.services.objects import store_errors
from gateway.storage import MAX_PART_SIZE, SHA256_HEX

log = logging.getLogger("gateway.uploads")

MIB = 1 << 20
MAX_DESCRIPTION = 4096
_IDENTITY: dict[CustodyType, type[age.X25519Identity] | type[age.HybridIdentity]] = {
    CustodyType.X25519: age.X25519Identity,
    CustodyType.MLKEM768X25519: age.HybridIdentity,
}


def check_artifact_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("field 'name' must be a non-empty string")
    if len(name) > 255:
        raise BadRequest("field 'name' must be at most 255 characters")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise BadRequest("field 'name' must not contain path separators or be '.' or '..'")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise BadRequest("field 'name' must not contain control characters")
    return name


@dataclass(frozen=True)
class NewUpload:
    """An upload a lab opens; the values are checked as it is made."""

    name: str
    kind: ArtifactKind
    share_with: tuple[str, ...]
    description: str = ""
    size: int | None = None
    custody: CustodyType = CustodyType.X25519
    holder: Custody = Custody.GATEWAY
    """Who holds the key: the gateway (``custody`` is then its identity's type) or the lab."""

    def __post_init__(self) -> None:
        check_artifact_name(self.name)
        if not self.share_with:
            raise BadRequest(
                "field 'share_with' must be a non-empty list of agency organisation names"
            )
        if len(self.description) > MAX_DESCRIPTION:
            raise BadRequest(
                f"field 'description' must be a string of at most {MAX_DESCRIPTION} characters"
            )
        if self.size is not None and self.size < 1:
            raise BadRequest(
                "field 'size' must be a positive integer (the expected ciphertext size)"
            )


@dataclass(frozen=True)
class NewPart:
    """One part a lab sends: its number, its length and the SHA-256 it declares (lower-case hex)."""

    number: int
    length: int
    sha256: str

    def __post_init__(self) -> None:
        if not SHA256_HEX.match(self.sha256):
            raise BadRequest(f"part {self.number}: {self.sha256!r} is not a hex SHA-256")


def choose_part_size(rt: Runtime, size: int | None) -> int:
    cfg = rt.config.uploads
    part = cfg.default_part_size_mib * MIB
    if size is not None:
        needed = math.ceil(size / cfg.max_parts / MIB) * MIB
        part = max(part, needed, cfg.min_part_size_mib * MIB)
    if part > MAX_PART_SIZE:
        raise Unprocessable(
            f"an artifact of {size} bytes does not fit in {cfg.max_parts} parts of at most 5 GiB"
        )
    return part


def _require_agencies(session: Session, names: tuple[str, ...]) -> None:
    for org_name in names:
        org = session.get(Org, org_name)
        if org is None or org.kind != OrgKind.AGENCY:
            raise BadRequest(f"share_with: {org_name!r} is not an agency organisation")


def create(rt: Runtime, caller: Caller, new: NewUpload) -> Upload:
    """Open an upload: its custody key, its store upload, its row and its ``upload.create`` entry.

    The artifact id is reserved here: the custody context (upload, artifact, org) binds
    the wrapped identity, and completion makes the artifact under this id. Under lab
    custody nothing is made in the custody backend and no identity exists; the artifact
    id is made at completion. The quotas are checked again inside the transaction, the
    organisation's row locked, so racing creations cannot overshoot them. If creation
    fails after the store's staging or the custody key was made, both are discarded
    (best effort; the sweeper's clean-up of stale store uploads takes what is left of
    the staging).
    """
    quotas.check_create(rt, caller.actor.org, new.size)  # early, before any key is made
    who = caller.actor
    upload_id, artifact_id = new_id("up"), new_id("art")
    ctx = CustodyContext(upload_id, artifact_id, who.org)
    object_key = f"artifacts/{upload_id}.age"
    made = _Made()
    try:
        with events.fail_closed(rt) as session:
            choose_part_size(rt, new.size)  # a size no upload fits: 422, first
            _check_quotas_locked(rt, session, who.org, new.size)
            _require_agencies(session, new.share_with)
            now = rt.now()
            with store_errors(upload_id):
                made.handle = handle = rt.store.begin_upload(object_key)
            upload = _new_row(rt, new, upload_id, object_key, handle, now)
            upload.org, upload.principal_id = who.org, who.id
            lab = new.holder == Custody.LAB
            wrapped = None if lab else _wrap_new_identity(rt, ctx, new.custody, made, upload)
            session.add(upload)
            session.flush()  # the upload row first: the custody key refers to it
            if wrapped is not None and made.ref is not None:
                session.add(
                    CustodyKey(
                        upload_id=upload_id,
                        artifact_id=artifact_id,
                        key_ref=made.ref,
                        wrapped=wrapped,
                        created_at=now,
                    )
                )
                session.flush()
            custody: Any = (
                Custody.LAB
                if lab
                else {"backend": rt.custody.name, "key": made.ref, "artifact": artifact_id}
            )
            events.record(
                rt,
                session,
                "upload.create",
                caller,
                subject_org=who.org,
                details={
                    "upload": upload_id,
                    "name": new.name,
                    "kind": new.kind,
                    "share_with": upload.share_with,
                    "custody": custody,
                },
            )
    except BaseException:
        _discard(rt, ctx, object_key, made)
        raise
    return upload


def _wrap_new_identity(
    rt: Runtime, ctx: CustodyContext, kind: CustodyType, made: _Made, upload: Upload
) -> bytes:
    """A fresh custody identity of ``kind``: its recipient on ``upload``, its key made and
    the identity wrapped in the backend (``made`` learns the key, to destroy on failure)."""
    identity = _IDENTITY[kind].generate()
    upload.recipient = str(identity.to_recipient())
    with custody_errors(ctx.upload_id):
        made.ref = rt.custody.create(ctx)
        return rt.custody.wrap(ctx, made.ref, str(identity).encode())


def _new_row(
    rt: Runtime, new: NewUpload, upload_id: str, object_key: str, handle: str, now: datetime
) -> Upload:
    return Upload(
        id=upload_id,
        name=new.name,
        kind=new.kind,
        share_with=sorted(set(new.share_with)),
        description=new.description,
        expected_size=new.size,
        part_size=choose_part_size(rt, new.size),
        max_parts=rt.config.uploads.max_parts,
        recipient="",
        custody=new.holder,
        state=UploadState.OPEN,
        object_key=object_key,
        store_handle=handle,
        created_at=now,
        expires_at=now + timedelta(hours=rt.config.uploads.open_ttl_hours),
    )


@dataclass
class _Made:
    """What an upload's creation made outside the database, to discard if it fails."""

    handle: str | None = None
    ref: KeyRef | None = None


def _discard(rt: Runtime, ctx: CustodyContext, object_key: str, made: _Made) -> None:
    if made.ref is not None:
        try:
            rt.custody.destroy(ctx, made.ref)
        except Exception as exc:  # noqa: BLE001 - the failure that brought us here matters more
            log.warning("could not destroy the custody key of %s: %s", ctx.upload_id, exc)
    if made.handle is not None:
        try:
            rt.store.abort_upload(object_key, made.handle)
        except Exception as exc:  # noqa: BLE001 - left for the clean-up of stale store uploads
            log.warning("could not discard the store upload of %s: %s", ctx.upload_id, exc)


def _check_quotas_locked(rt: Runtime, session: Session, org: str, size: int | None) -> None:
    """The per-organisation quotas again, under a lock on the organisation's row.

    SQLite's transaction already holds the write lock; PostgreSQL locks the row, so two
    creations for one organisation are counted one after the other.
    """
    session.get(Org, org, with_for_update=True)
    q = rt.config.quotas
    count = quotas.open_uploads(session, org)
    if count >= q.open_uploads_per_org:
        metrics.QUOTA_REFUSALS.labels("open_uploads").inc()
        raise InsufficientStorage(
            f"organisation {org} has {count} open uploads, its quota; complete or abort one first",
            quota="open_uploads",
        )
    flying = quotas.in_flight(session, org)
    if size is not None and flying + size > q.in_flight_gib_per_org * quotas.GIB:
        metrics.QUOTA_REFUSALS.labels("bytes_in_flight").inc()
        raise InsufficientStorage(
            f"organisation {org} would have {flying + size} bytes in open uploads, past its "
            f"quota of {q.in_flight_gib_per_org} GiB; complete or abort an upload first",
            quota="bytes_in_flight",
        )


def get(rt: Runtime, caller: Caller, upload_id: str, action: str) -> Upload:
    """The upload, if ``caller`` may do ``action`` on it; else a recorded 404 or 403."""
    with rt.db.session() as session:
        upload = session.get(Upload, upload_id)
    return authz.require_found(rt, caller, action, upload, what=f"upload {upload_id}")


def parts(rt: Runtime, upload: Upload) -> list[UploadPart]:
    """The parts stored for ``upload``, by number: what a client resumes from."""
    with rt.db.session() as session:
        return parts_of(session, upload.id)


def parts_of(session: Session, upload_id: str) -> list[UploadPart]:
    return list(
        session.scalars(
            select(UploadPart).where(UploadPart.upload_id == upload_id).order_by(UploadPart.number)
        )
    )


def require_open(rt: Runtime, upload: Upload) -> None:
    """409 while it is being completed or once completed; 410 once it ended otherwise."""
    if upload.state == UploadState.COMPLETED:
        raise Conflict(f"upload {upload.id} is already completed (artifact {upload.artifact_id})")
    if upload.state == UploadState.COMPLETING:
        raise Conflict(f"upload {upload.id} is being completed; it takes no more changes")
    if upload.state != UploadState.OPEN:
        raise Gone(f"upload {upload.id} is {upload.state.replace('_', ' ')}")
    if upload.expires_at <= rt.now():
        raise Gone(f"upload {upload.id} timed out at {upload.expires_at.isoformat()}Z")


def last_part_number(upload: Upload) -> int | None:
    if upload.expected_size is None:
        return None
    return max(1, math.ceil(upload.expected_size / upload.part_size))


def check_part(upload: Upload, number: int, length: int) -> None:
    """Refuse a part that cannot belong to ``upload``, before a byte of it is read."""
    if not 1 <= number <= upload.max_parts:
        raise BadRequest(f"part number must be between 1 and {upload.max_parts}")
    if length > upload.part_size:
        raise PayloadTooLarge(
            f"a part may be at most part_size = {upload.part_size} bytes; this one is {length}"
        )
    if length == 0:
        raise BadRequest("a part must not be empty")
    last = last_part_number(upload)
    if last is None or upload.expected_size is None:
        return
    if number > last:
        raise BadRequest(
            f"part {number} is past the last part ({last}) of the expected size {upload.expected_size}"
        )
    expected = (
        upload.part_size if number < last else upload.expected_size - (last - 1) * upload.part_size
    )
    if length != expected:
        raise BadRequest(f"part {number} must be exactly {expected} bytes; this one is {length}")


class Readable(Protocol):
    """A part's body: all the store does with it is read it."""

    def read(self, n: int = -1, /) -> bytes: ...


def store_part(rt: Runtime, upload: Upload, part: NewPart, stream: Readable) -> UploadPart:
    """Stream one part into the store; the database row is written only once it verified."""
    quotas.check_part(rt, upload, part.number, part.length)
    head = _HeadCapture(stream, rt.config.uploads.max_header_bytes) if part.number == 1 else None
    # The store only calls read() on what it is given, so any Readable will do.
    body = cast(BinaryIO, head if head is not None else stream)
    offset = (part.number - 1) * upload.part_size
    with store_errors(upload.id):
        stored = rt.store.put_part(
            upload.object_key,
            upload.store_handle,
            part.number,
            offset,
            part.length,
            body,
            part.sha256,
        )
    now = rt.now()
    with events.fail_closed(rt) as session:
        _still_open(rt, session, upload.id, head.captured if head is not None else None)
        row = session.get(UploadPart, (upload.id, part.number))
        if row is None:
            row = UploadPart(upload_id=upload.id, number=part.number, created_at=now)
            session.add(row)
        row.size, row.sha256, row.etag, row.created_at = part.length, part.sha256, stored.etag, now
    return row


def _still_open(rt: Runtime, session: Session, upload_id: str, header: bytes | None) -> None:
    """Lock the upload's row while it is open (a completion's claim takes the same row), or refuse.

    Once an upload is claimed for completion its parts are frozen: a part that arrives
    after the claim is not recorded (409), whatever the store did with its bytes.
    """
    values: dict[str, Any] = (
        {"state": Upload.state} if header is None else {"header_prefix": header}
    )
    if not cas_update(
        session,
        update(Upload)
        .where(Upload.id == upload_id, Upload.state == UploadState.OPEN)
        .values(**values),
    ):
        current = session.get(Upload, upload_id, populate_existing=True)
        if current is None:
            raise Gone(f"upload {upload_id} is no longer open")
        require_open(rt, current)


class _HeadCapture:
    """Passes a stream through, keeping its first ``limit`` bytes (the age header)."""

    def __init__(self, inner: Readable, limit: int) -> None:
        self.inner, self.limit, self._head = inner, limit, bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        if len(self._head) < self.limit:
            self._head += data[: self.limit - len(self._head)]
        return data

    @property
    def captured(self) -> bytes:
        return bytes(self._head)


def abort(rt: Runtime, caller: Caller, upload: Upload) -> None:
    """The lab aborts an open upload: its parts, staging and custody key are discarded.

    The abort commits first (a compare-and-set from ``open``, so it never races a
    completion's claim); the store's staging is discarded after, best effort: whatever
    is left is invisible and the sweeper's clean-up of stale store uploads removes it.
    """
    require_open(rt, upload)
    _end(rt, upload.id, caller, action="upload.abort", state=UploadState.ABORTED)


def _end(
    rt: Runtime,
    upload_id: str,
    who: Caller | Actor | None,
    *,
    action: str,
    state: UploadState,
) -> bool:
    """End an open upload as ``state`` with its entry, then discard its store upload."""
    with events.fail_closed(rt) as session:
        ended = cas_update(
            session,
            update(Upload)
            .where(Upload.id == upload_id, Upload.state == UploadState.OPEN)
            .values(state=state, ended_at=rt.now(), header_prefix=None),
        )
        upload = session.get(Upload, upload_id, populate_existing=True)
        if not ended or upload is None:
            if upload is not None and who is not None:
                require_open(rt, upload)
            return False
        for row in parts_of(session, upload_id):
            session.delete(row)
        events.record(
            rt, session, action, who, subject_org=upload.org, details={"upload": upload_id}
        )
    _destroy_ended_key(rt, upload_id)
    try:
        rt.store.abort_upload(upload.object_key, upload.store_handle)
    except Exception as exc:  # noqa: BLE001 - left for the clean-up of stale store uploads
        log.warning("could not discard the store upload of %s: %s", upload_id, exc)
    return True


ENDED = (UploadState.ABORTED, UploadState.TIMED_OUT)


def _destroy_ended_key(rt: Runtime, upload_id: str) -> bool:
    """Destroy the custody key of an upload already committed as ended; True if one was.

    After the end, not in its transaction: a destroy that fails, or a commit that fails
    after the backend destroyed the key, then leaves an *ended* upload holding a key row
    (which opens nothing: an ended upload is never completed or served), never an open
    upload whose key is gone. :func:`sweep_ended_keys` destroys what is left; a destroy
    repeated after a commit that failed finds no key and only deletes the row.
    """
    try:
        with rt.db.session() as session:
            destroyed = destroy_custody_key(rt, session, upload_id)
    except Exception as exc:  # noqa: BLE001 - retried by the sweeper, logged here
        log.warning("could not destroy the custody key of ended upload %s: %s", upload_id, exc)
        return False
    if destroyed:
        rt.db.scrub()  # the wrapped identity's old bytes leave the database's files too
    return destroyed


KEYS_PER_SWEEP = 100
"""At most this many keys of ended uploads are destroyed by one sweep; the rest, by the next."""


def sweep_ended_keys(rt: Runtime) -> int:
    """Destroy the custody keys left by aborted and timed-out uploads; how many were destroyed."""
    with rt.db.session() as session:
        ids = list(
            session.scalars(
                select(CustodyKey.upload_id)
                .join(Upload, Upload.id == CustodyKey.upload_id)
                .where(Upload.state.in_(ENDED))
                .order_by(Upload.ended_at, CustodyKey.upload_id)
                .limit(KEYS_PER_SWEEP)
            )
        )
    return sum(_destroy_ended_key(rt, upload_id) for upload_id in ids)


def sweep_stale(rt: Runtime, now: datetime) -> int:
    """Abort open uploads past their deadline; returns how many were timed out."""
    with rt.db.session() as session:
        ids = list(
            session.scalars(
                select(Upload.id).where(Upload.state == UploadState.OPEN, Upload.expires_at <= now)
            )
        )
    timed_out = 0
    for upload_id in ids:
        try:
            timed_out += _time_out(rt, upload_id)
        except Exception:  # one failure must not stop the others; retried next sweep
            log.exception("could not time out upload %s; retrying next sweep", upload_id)
    return timed_out


def _time_out(rt: Runtime, upload_id: str) -> bool:
    return _end(rt, upload_id, None, action="upload.timeout", state=UploadState.TIMED_OUT)
