"""Completing an upload into an artifact: claimed once, assembled once, never at the parts' cost.

An upload goes ``open`` → ``completing`` → ``completed``:

1. **Claim.** After every check passes (:mod:`gateway.services.completion_checks`: a
   422 naming what failed, nothing changed), one compare-and-set moves the upload from
   ``open`` to ``completing``, with the time and the completion it is for (manifest,
   signature, claimant). Only the request that made the claim assembles, so exactly one
   request ever touches the store's parts.
2. **Assemble.** The store assembles the parts into the object. A failure before the
   object exists returns the upload to ``open`` (the parts stay; the lab retries); if
   the object turns out to exist after all (a lost answer), the claim goes on.
3. **Finish.** A compare-and-set from ``completing`` to ``completed``, with the artifact,
   its shares and its ``upload.complete`` entry, in one transaction. It may be done by
   whoever finds the object assembled: the claimant, a retry of the same completion, or
   the sweeper. If it fails (the database, the log), the object is kept and the upload
   stays ``completing``: the same completion sent again finishes it.

A completion that is claimed but never finishes (a crash) is stale after
``uploads.completing_timeout_seconds``: a retry of the same completion takes it over,
and the sweeper finishes it (the object is there) or returns it to ``open`` (it is not).
Duplicates get the same artifact (200 once it exists) or a clear 409 while another request
holds the claim; a completion with another manifest or signature is a 409. Nothing here
ever deletes an object, and no database failure deletes a part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway import events
from gateway.caller import Actor, Caller
from gateway.db import cas_update
from gateway.errors import Conflict, GatewayError, Gone
from gateway.models import (
    Artifact,
    ArtifactShare,
    ArtifactState,
    Custody,
    CustodyKey,
    Principal,
    Upload,
    UploadPart,
    UploadState,
    new_id,
)
from gateway.runtime import Runtime
from gateway.services.completion_checks import Checked, check
from gateway.services.lab_custody import UNCHECKED
from gateway.services.objects import store_errors, store_unavailable
from gateway.services.uploads import parts_of, require_open
from gateway.storage import StoredPart

log = logging.getLogger("gateway.completion")


@dataclass(frozen=True)
class Completion:
    """What a lab sends to complete an upload: its signed manifest, checked as it is."""

    manifest: object
    signature: object


@dataclass(frozen=True)
class Completed:
    """The artifact an upload became; ``created`` False when it existed before this request."""

    artifact: Artifact
    created: bool


@dataclass(frozen=True)
class Claim:
    """A completion in progress, as one request sees it.

    ``since`` is the claim's time, its compare-and-set token; ``mine`` is whether this
    request holds the claim (and may assemble) or found another's (and may only finish
    once the object is assembled).
    """

    upload_id: str
    object_key: str
    store_handle: str
    since: datetime
    parts: tuple[StoredPart, ...]
    checked: Checked
    mine: bool


def complete(rt: Runtime, caller: Caller, upload_id: str, done: Completion) -> Completed:
    """Complete ``upload_id`` with ``done``, or answer the artifact it already became."""
    found = claim(rt, caller, upload_id, done)
    if isinstance(found, Completed):
        return found
    if not _assembled(rt, found):
        if not found.mine:
            raise Conflict(
                f"upload {upload_id} is being completed by another request; "
                "send the same completion again to get its artifact"
            )
        _assemble(rt, found)
    return _finish(rt, caller, found)


def claim(rt: Runtime, caller: Caller, upload_id: str, done: Completion) -> Claim | Completed:
    """Check ``done`` and claim the upload for it; the artifact if it was completed already."""
    now = rt.now()
    stale = now - timedelta(seconds=rt.config.uploads.completing_timeout_seconds)
    record = {"manifest": done.manifest, "signature": done.signature, "by": caller.actor.id}
    with events.fail_closed(rt) as session:
        upload = session.get(Upload, upload_id)
        if upload is None:
            raise Gone(f"upload {upload_id} is no longer open")
        if upload.state == UploadState.COMPLETED:
            return _already(session, upload, done)
        if upload.state == UploadState.COMPLETING:
            _require_same(upload, done)
            return _claimed(rt, session, upload, record, stale, now)
        require_open(rt, upload)
        # The claim first: it locks the row a part upload also updates, so the parts read
        # next are the ones assembled. A check that fails rolls the claim back with it.
        taken = cas_update(
            session,
            update(Upload)
            .where(Upload.id == upload_id, Upload.state == UploadState.OPEN)
            .values(state=UploadState.COMPLETING, completing_since=now, completion=record),
        )
        if not taken:
            raise Conflict(f"upload {upload_id} changed meanwhile; send the completion again")
        parts = parts_of(session, upload_id)
        checked = check(rt, session, upload, parts, done.manifest, done.signature)
        return _claim_of(upload, parts, checked, now, mine=True)


def _claimed(
    rt: Runtime,
    session: Session,
    upload: Upload,
    record: dict[str, Any],
    stale: datetime,
    now: datetime,
) -> Claim:
    """Another request's claim on ``upload``: taken over when it is stale."""
    assert upload.completing_since is not None  # set with the completing state
    since, mine = upload.completing_since, False
    if since <= stale:
        mine = bool(
            cas_update(
                session,
                update(Upload)
                .where(
                    Upload.id == upload.id,
                    Upload.state == UploadState.COMPLETING,
                    Upload.completing_since == since,
                )
                .values(completing_since=now, completion=record),
            )
        )
        since = now if mine else since
    parts = parts_of(session, upload.id)
    completion = upload.completion or {}
    checked = check(
        rt, session, upload, parts, completion.get("manifest"), completion.get("signature")
    )
    return _claim_of(upload, parts, checked, since, mine=mine)


def _claim_of(
    upload: Upload, parts: list[UploadPart], checked: Checked, since: datetime, *, mine: bool
) -> Claim:
    stored = tuple(StoredPart(p.number, p.size, p.sha256, p.etag) for p in parts)
    return Claim(upload.id, upload.object_key, upload.store_handle, since, stored, checked, mine)


def _require_same(upload: Upload, done: Completion) -> None:
    held = upload.completion or {}
    if held.get("manifest") != done.manifest or held.get("signature") != done.signature:
        raise Conflict(f"upload {upload.id} is being completed with another manifest or signature")


def _already(session: Session, upload: Upload, done: Completion) -> Completed:
    artifact = session.get(Artifact, upload.artifact_id) if upload.artifact_id else None
    if artifact is None:
        raise Conflict(f"upload {upload.id} is already completed")
    if artifact.manifest != done.manifest or artifact.signature != done.signature:
        raise Conflict(
            f"upload {upload.id} is already completed as artifact {artifact.id}, "
            "with another manifest or signature"
        )
    return Completed(artifact, created=False)


# --- the store's part ---------------------------------------------------------------------


def _assembled(rt: Runtime, found: Claim) -> bool:
    """Whether the object is already assembled (a claim that got this far before)."""
    try:
        key = found.object_key
        return rt.store.exists(key) and rt.store.size(key) == found.checked.total
    except Exception as exc:  # noqa: BLE001 - a store that cannot tell: assemble, it is idempotent
        log.warning("could not look for the object of upload %s: %s", found.upload_id, exc)
        return False


def _assemble(rt: Runtime, found: Claim) -> None:
    """The store assembles the parts; a failure returns the upload to open, parts kept."""
    try:
        with store_errors(found.upload_id):
            rt.store.complete_upload(
                found.object_key, found.store_handle, list(found.parts), found.checked.total
            )
    except Exception as exc:
        if not (isinstance(exc, GatewayError) and exc.status == 422) and _assembled(rt, found):
            return  # the store did assemble; only its answer was lost
        _revert(rt, found.upload_id, found.since)
        if isinstance(exc, GatewayError):
            raise
        raise store_unavailable(exc) from None


def _revert(rt: Runtime, upload_id: str, since: datetime) -> bool:
    """Return the upload to ``open``, if the claim made at ``since`` still holds it; best effort."""
    try:
        with rt.db.session() as session:
            return bool(
                cas_update(
                    session,
                    update(Upload)
                    .where(
                        Upload.id == upload_id,
                        Upload.state == UploadState.COMPLETING,
                        Upload.completing_since == since,
                    )
                    .values(state=UploadState.OPEN, completing_since=None, completion=None),
                )
            )
    except Exception as exc:  # noqa: BLE001 - still completing: stale later, the sweeper reverts
        log.warning("could not return upload %s to open: %s", upload_id, exc)
        return False


# --- the artifact -------------------------------------------------------------------------


def _finish(rt: Runtime, who: Caller | Actor | None, found: Claim) -> Completed:
    """``completing`` to ``completed`` with the artifact and its entry, once, whoever races."""
    now = rt.now()
    with events.fail_closed(rt) as session:
        # The id reserved at creation: the custody context already binds the key to it.
        key = session.get(CustodyKey, found.upload_id)
        artifact_id = key.artifact_id if key is not None else new_id("art")
        won = cas_update(
            session,
            update(Upload)
            .where(Upload.id == found.upload_id, Upload.state == UploadState.COMPLETING)
            .values(
                state=UploadState.COMPLETED,
                ended_at=now,
                artifact_id=artifact_id,
                completing_since=None,
                completion=None,
            ),
        )
        upload = session.get(Upload, found.upload_id, populate_existing=True)
        assert upload is not None  # uploads are never deleted
        if not won:
            artifact = session.get(Artifact, upload.artifact_id) if upload.artifact_id else None
            if artifact is None:
                raise Conflict(
                    f"upload {upload.id} is no longer being completed; send the completion again"
                )
            return Completed(artifact, created=False)
        artifact = _make_artifact(rt, session, who, upload, found.checked, artifact_id)
    return Completed(artifact, created=True)


def _make_artifact(
    rt: Runtime,
    session: Session,
    who: Caller | Actor | None,
    upload: Upload,
    checked: Checked,
    artifact_id: str,
) -> Artifact:
    now = rt.now()
    artifact = Artifact(
        id=artifact_id,
        upload_id=upload.id,
        org=upload.org,
        name=upload.name,
        kind=upload.kind,
        description=upload.description,
        share_with=upload.share_with,
        size=checked.total,
        header_size=checked.header_size,
        object_key=upload.object_key,
        state=ArtifactState.AVAILABLE,
        submitted_at=now,
        review_ends_at=now + timedelta(days=rt.config.access.review_window_days),
        manifest=checked.manifest,
        signature=checked.signature,
        signing_key=checked.signing_key,
        custody=upload.custody,
    )
    session.add(artifact)
    session.flush()
    session.add_all(ArtifactShare(artifact_id=artifact.id, org=org) for org in upload.share_with)
    session.flush()
    events.record(
        rt,
        session,
        "upload.complete",
        who,
        artifact=artifact.id,
        subject_org=upload.org,
        details={
            "upload": upload.id,
            "size": checked.total,
            "parts_sha256": checked.manifest["ciphertext"]["parts_sha256"],
            **_custody_details(rt, session, upload),
        },
    )
    return artifact


def _custody_details(rt: Runtime, session: Session, upload: Upload) -> dict[str, Any]:
    """The entry's ``custody``: the unwrap the header check made just before it (gateway
    custody), or ``"lab"`` and what could not be checked without the file key."""
    if upload.custody == Custody.LAB:
        return {"custody": Custody.LAB, "unchecked": list(UNCHECKED)}
    key = session.get(CustodyKey, upload.id)
    ref = key.key_ref if key is not None else None
    return {"custody": {"backend": rt.custody.name, "key": ref}}


# --- the sweeper's part -------------------------------------------------------------------


def sweep_stale(rt: Runtime, now: datetime) -> dict[str, int]:
    """Finish stale completions whose object is assembled; return the others to ``open``."""
    stale = now - timedelta(seconds=rt.config.uploads.completing_timeout_seconds)
    with rt.db.session() as session:
        due = list(
            session.scalars(
                select(Upload.id).where(
                    Upload.state == UploadState.COMPLETING, Upload.completing_since <= stale
                )
            )
        )
    report = {"completions_finished": 0, "completions_reverted": 0}
    for upload_id in due:
        try:
            report[_resolve(rt, upload_id)] += 1
        except Exception:  # one failure must not stop the others; retried next sweep
            log.exception("could not resolve the completion of upload %s", upload_id)
    return report


def _resolve(rt: Runtime, upload_id: str) -> str:
    """Finish or revert one stale completion, as its claimant; the report's key for it."""
    with rt.db.session() as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None and upload.completing_since is not None  # selected so
        since, held = upload.completing_since, upload.completion or {}
        principal = session.get(Principal, str(held.get("by", "")))
    who = events.CLI_ACTOR
    if principal is not None:
        who = Actor(id=principal.id, name=principal.name, org=principal.org, role=principal.role)
    try:
        found = claim(
            rt, Caller(who), upload_id, Completion(held.get("manifest"), held.get("signature"))
        )
    except GatewayError as exc:
        if exc.status != 422:
            raise
        log.warning("stale completion of upload %s no longer passes its checks: %s", upload_id, exc)
        _revert(rt, upload_id, since)
        return "completions_reverted"
    if isinstance(found, Completed):
        return "completions_finished"
    if _assembled(rt, found):
        _finish(rt, who, found)
        return "completions_finished"
    _revert(rt, upload_id, found.since)
    return "completions_reverted"
