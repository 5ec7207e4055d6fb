"""The custody identity of an upload in the flows: its context, its unwrap, its destruction.

The custody backend (:mod:`gateway.custody`) wraps and unwraps bytes; this module ties it
to the database row (``custody_keys``: the wrapped value, the backend's key reference
and the artifact id reserved at creation) and maps its errors to the gateway's:
:class:`~gateway.custody.CustodyUnavailable` is 503, :class:`~gateway.custody.KeyDestroyed`
410, and any :class:`~gateway.custody.UnwrapFailed` (a value or reference rewritten in the
database, a key file that does not belong) a 500 whose detail says nothing of the keys,
with an integrity alarm in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from gateway import age
from gateway.custody import (
    LEGACY_REF,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    UnwrapFailed,
)
from gateway.errors import GatewayError, Gone, ServiceUnavailable
from gateway.models import CustodyKey, Upload
from gateway.runtime import Runtime

log = logging.getLogger("gateway.custody")


class CustodyIntegrity(GatewayError):
    status, slug, title = 500, "custody-integrity", "Custody integrity error"


@contextmanager
def custody_errors(upload_id: str) -> Iterator[None]:
    """Turn the custody backend's errors raised inside the block into the gateway's."""
    try:
        yield
    except KeyDestroyed:
        raise Gone("the custody key of this upload has been shredded") from None
    except CustodyUnavailable as exc:
        log.error("custody backend unavailable for upload %s: %s", upload_id, exc)
        raise ServiceUnavailable(
            "the custody backend is not available; nothing was changed, try again later"
        ) from None
    except UnwrapFailed as exc:
        log.critical("custody integrity alarm for upload %s: %s", upload_id, exc)
        raise CustodyIntegrity(
            f"the custody key of upload {upload_id} failed its integrity check; "
            "the operator has been alerted"
        ) from None


def custody_context(session: Session, upload_id: str) -> tuple[CustodyContext, CustodyKey]:
    """The upload's custody context and its wrapped identity's row; 410 once shredded."""
    row = session.get(CustodyKey, upload_id)
    upload = session.get(Upload, upload_id)
    if row is None or upload is None:
        raise Gone("the custody key of this upload has been shredded")
    return CustodyContext(upload_id, row.artifact_id, upload.org), row


def custody_identity(
    rt: Runtime, session: Session, upload_id: str
) -> age.X25519Identity | age.HybridIdentity:
    """The upload's custody identity, unwrapped by the custody backend; 410 once shredded.

    Called only by the flows that need it (completion's header check, key release), in
    the transaction that records their entry, so every unwrap has its audit entry.
    """
    ctx, row = custody_context(session, upload_id)
    with custody_errors(upload_id):
        secret = rt.custody.unwrap(ctx, KeyRef(row.key_ref), row.wrapped)
    return age.parse_identity(secret.decode())


def destroy_custody_key(rt: Runtime, session: Session, upload_id: str) -> bool:
    """Delete the upload's wrapped identity and destroy its key in the backend; True if it had one.

    Call it last in the shredding transaction: the row's deletion is flushed first, then
    the backend destroys the key (irreversible), then the caller commits. If that commit
    fails, the key is gone all the same and the database still shows the row, which
    opens nothing (410). An artifact's shred has already been committed as ``shredding``
    before this is called (:mod:`gateway.services.lifecycle`), and an upload's end as
    ``aborted`` or ``timed_out`` (:mod:`gateway.services.uploads`), so nothing is released
    meanwhile and the retry (the call's own, the lab's, the sweeper's) finds no key left
    and commits.
    """
    row = session.get(CustodyKey, upload_id)
    upload = session.get(Upload, upload_id)
    if row is None or upload is None:
        return False
    ctx = CustodyContext(upload_id, row.artifact_id, upload.org)
    ref = KeyRef(row.key_ref)
    session.delete(row)
    session.flush()
    if ref != LEGACY_REF:  # a value of the old master key is shredded by deleting it
        with custody_errors(upload_id):
            rt.custody.destroy(ctx, ref)
    return True
