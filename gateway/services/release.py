"""Key release by re-headering, under a grant (age v1, c2sp.org/age, "Header").

Once per grant the stored header (the object's first ``artifact.header_size`` bytes) is
opened with the upload's custody identity and a new header is written for the grantee's
registered recipient (``age.reheader``: a fresh X25519 stanza and MAC, the payload
untouched). The ``key.release`` entry and the header are written in one transaction, so the
header is never stored, let alone sent, without its committed audit entry. That transaction
also decides: it locks the artifact's row while it is still available and inside its
window, checks its custody key is still there, and stores the header only under a
compare-and-set on a grant still active, inside its time and not yet released, so a
revocation, an expiry or a withdrawal that commits first leaves nothing released.

The header is bound to the recipient registered at release time. If the grantee later
registers another recipient, the grant's key is *not* released a second time: content
requests under that grant answer 409 naming the recipient the key was released to (a
new recipient needs a new grant). A stolen token can therefore not redirect a key that
has already been released.

Under lab custody the gateway holds no identity: the lab made the grantee's header when
it approved (:mod:`gateway.services.lab_custody`), and it was stored on the grant, with
the recipient it was made for, in the approval's transaction (the ``access.approve``
entry records its digest). It is served exactly as a header made here; there is nothing
to make on first use, so no ``key.release`` entry, and a grant without one refuses (409).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import NoReturn

from sqlalchemy import select, update

from gateway import age, authz, events
from gateway.caller import Caller
from gateway.clock import rfc3339
from gateway.db import cas_update
from gateway.errors import Conflict, Gone
from gateway.models import (
    AccessRequest,
    Artifact,
    Custody,
    CustodyKey,
    Grant,
    GrantState,
    Principal,
    RequestState,
)
from gateway.runtime import Runtime
from gateway.services.artifacts import get as get_artifact
from gateway.services.artifacts import require_available
from gateway.services.custody_keys import custody_identity
from gateway.services.grants import lock_available
from gateway.services.objects import store_errors

_UNDECIDED = (RequestState.PENDING, RequestState.DENIED, RequestState.CANCELLED)


def active_grant(rt: Runtime, caller: Caller, artifact: Artifact, action: str) -> Grant:
    """The caller's active grant on ``artifact``, or a recorded 410/403 saying why not."""
    require_available(rt, caller, action, artifact)
    who = caller.actor
    now = rt.now()
    with rt.db.session() as session:
        grants = list(
            session.scalars(
                select(Grant)
                .where(Grant.artifact_id == artifact.id, Grant.grantee_id == who.id)
                .order_by(Grant.not_before.desc())
            )
        )
        latest = session.scalars(
            select(AccessRequest)
            .where(AccessRequest.artifact_id == artifact.id, AccessRequest.principal_id == who.id)
            .order_by(AccessRequest.created_at.desc(), AccessRequest.id)
        ).first()
    for g in grants:
        if g.state_at(now) == GrantState.ACTIVE and g.not_before <= now:
            return g
    _explain_no_grant(rt, caller, artifact, action, grants, latest)


def _explain_no_grant(
    rt: Runtime,
    caller: Caller,
    artifact: Artifact,
    action: str,
    grants: list[Grant],
    latest: AccessRequest | None,
) -> NoReturn:
    """Refuse, saying why: the latest request is undecided or denied, or its grant ended."""
    if latest is not None and latest.state in _UNDECIDED:
        state = latest.state
        authz.forbid(
            rt,
            caller,
            action,
            f"request {state}",
            f"access request {latest.id} is {state}"
            + (": the lab has not decided yet" if state == RequestState.PENDING else ""),
            subject=artifact,
        )
    # The grant of the latest request, else the newest grant: the one the caller last had.
    ended = grants[0] if grants else None
    if latest is not None:
        ended = next((g for g in grants if g.id == latest.grant_id), ended)
    if ended is not None:
        state = ended.state_at(rt.now())
        authz.forbid(
            rt,
            caller,
            action,
            f"grant {state}",
            f"grant {ended.id} is {state} (it ended at {rfc3339(ended.ended_at or ended.not_after)})",
            subject=ended,
        )
    authz.forbid(
        rt,
        caller,
        action,
        "no grant",
        f"no active grant on artifact {artifact.id}: request access first",
        subject=artifact,
    )


def release(rt: Runtime, caller: Caller, artifact: Artifact, grant: Grant, action: str) -> bytes:
    """The grant's age header for the grantee's recipient, made (and logged) on first use."""
    recipient = _recipient(rt, caller, grant, action)
    if grant.header is not None:
        return _released(rt, caller, grant, recipient, action)
    if artifact.custody == Custody.LAB:  # the lab makes every header; none can be made here
        authz.refuse(
            rt,
            caller,
            action,
            "no lab header",
            Conflict(f"grant {grant.id} holds no header from the lab: ask for a new grant"),
            subject=grant,
        )
    identity = _custody(rt, caller, artifact, grant, action)
    raw = b"".join(read_range(rt, artifact.object_key, 0, artifact.header_size))
    header = age.read_header(io.BytesIO(raw), max_size=max(len(raw), 1024))
    made = age.reheader(header, [identity], [age.parse_recipient(recipient)])
    stored = _store(rt, caller, artifact, grant, made, recipient)
    if stored is None:  # the artifact ended meanwhile: the refusal says how
        require_available(rt, caller, action, get_artifact(rt, caller, artifact.id, action))
        raise Gone(f"artifact {artifact.id} has ended")
    if stored:
        return made
    with rt.db.session() as session:  # released meanwhile by a concurrent request, or ended
        current = session.get(Grant, grant.id)
    if current is None or current.header is None:
        state = current.state_at(rt.now()) if current is not None else GrantState.REVOKED
        authz.forbid(
            rt, caller, action, f"grant {state}", f"grant {grant.id} is {state}", subject=grant
        )
    return _released(rt, caller, current, recipient, action)


def released_header(rt: Runtime, caller: Caller, grant: Grant, action: str) -> bytes | None:
    """The grant's header if its key was released to the caller's recipient; None if never.

    Refuses as :func:`release` would (no recipient registered, another recipient since
    the release) but makes nothing and records nothing else: what a ``HEAD`` needs.
    """
    recipient = _recipient(rt, caller, grant, action)
    if grant.header is None:
        return None
    return _released(rt, caller, grant, recipient, action)


def _store(
    rt: Runtime, caller: Caller, artifact: Artifact, grant: Grant, made: bytes, recipient: str
) -> bool | None:
    """Store the header with its ``key.release`` entry: True if stored, False if the grant
    was released or ended meanwhile, None if the artifact ended meanwhile."""
    now = rt.now()
    with events.fail_closed(rt) as session:
        if not lock_available(session, artifact.id, now):
            return None
        key = session.get(CustodyKey, artifact.upload_id)
        if key is None:
            return None
        stored = cas_update(
            session,
            update(Grant)
            .where(
                Grant.id == grant.id,
                Grant.state == GrantState.ACTIVE,
                Grant.not_after > now,
                Grant.header.is_(None),
            )
            .values(header=made, recipient=recipient, released_at=now),
        )
        if stored:
            events.record(
                rt,
                session,
                "key.release",
                caller,
                artifact=artifact.id,
                grant=grant.id,
                subject_org=artifact.org,
                details={
                    "recipient": recipient,
                    "header_sha256": hashlib.sha256(made).hexdigest(),
                    "header_size": len(made),
                    # The unwrap this release made, just before this entry (also in the
                    # backend's own log, for aws-kms: CloudTrail, by artifact).
                    "custody": {"backend": rt.custody.name, "key": key.key_ref},
                },
            )
    return bool(stored)


def _recipient(rt: Runtime, caller: Caller, grant: Grant, action: str) -> str:
    with rt.db.session() as session:
        principal = session.get(Principal, caller.actor.id)
        recipient = principal.recipient if principal else None
    if recipient is None:
        authz.refuse(
            rt,
            caller,
            action,
            "no recipient",
            Conflict("no recipient is registered: register your age recipient first"),
            subject=grant,
        )
    return recipient


def _released(rt: Runtime, caller: Caller, grant: Grant, recipient: str, action: str) -> bytes:
    if grant.recipient != recipient:
        authz.refuse(
            rt,
            caller,
            action,
            "recipient changed since key release",
            Conflict(
                f"the key of grant {grant.id} was released to recipient {grant.recipient}; it is never "
                "released twice: register that recipient again, or ask for a new grant",
                released_to=grant.recipient,
            ),
            subject=grant,
        )
    assert grant.header is not None  # checked by every caller
    return grant.header


def _custody(
    rt: Runtime, caller: Caller, artifact: Artifact, grant: Grant, action: str
) -> age.X25519Identity | age.HybridIdentity:
    with rt.db.session() as session:
        try:
            return custody_identity(rt, session, artifact.upload_id)
        except Gone as exc:
            error = exc
    authz.refuse(rt, caller, action, "key shredded", error, subject=grant)


def read_range(rt: Runtime, key: str, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of a stored object, in the store's chunks."""
    if end <= start:
        return iter(())
    with store_errors():
        return rt.store.open_read(key, start, end)
