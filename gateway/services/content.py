"""Key release by re-headering, content streaming with Range, and time-limited download URLs.

Key release (ARCHITECTURE.md, "Key release by re-headering"; age v1 header, C2SP age
spec "Header"): once per grant the stored header (the object's first
``artifact.header_size`` bytes) is opened with the upload's custody identity and a new
header is written for the grantee's registered recipient (``age.reheader``: a fresh
X25519 stanza and MAC, the payload untouched). The ``key.release`` entry and the header
are written in one transaction, so the header is never stored, let alone sent, without
its committed audit entry.

The header is bound to the recipient registered at release time. If the grantee later
registers another recipient, the grant's key is *not* released a second time: content
requests under that grant answer 409 naming the recipient the key was released to (a
new recipient needs a new grant). A stolen token can therefore not redirect a key that
has already been released.

Content is ``header + object[header_size:]``, streamed in the store's chunks, never read
whole; a single ``bytes=`` range is honoured (206), a start past the end is 416, other
forms are ignored as RFC 9110 section 14.2 allows. Each request's ``content.download``
entry, with the byte range, is committed before the first byte is sent.

Download URLs: presigned by the store where it can (S3, at most
``access.download_url_ttl_seconds`` and never past the grant or the window); on the local
store the gateway signs ``artifact, grant, expiry`` with HMAC-SHA256 under ``gw.url_key``
and serves the object itself, checking the signature in constant time and the grant again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select, update

from gateway import age, events
from gateway.clock import rfc3339
from gateway.errors import Conflict, Forbidden, Gone, RangeNotSatisfiable
from gateway.models import AccessRequest, Artifact, CustodyKey, Grant, Principal
from gateway.runtime import Gateway
from gateway.services import uploads
from gateway.services.access import changed, forbid, grant_state, refuse, require_available
from gateway.services.identity import Actor

URL_ROUTE = "/download/"


@dataclass
class Download:
    """What a view needs to answer: status, headers, and the body as a lazy iterator."""

    status: int
    headers: dict[str, str]
    body: Iterator[bytes] = field(repr=False)


# --- grants -------------------------------------------------------------------------------


def active_grant(gw: Gateway, who: Actor, artifact: Artifact, action: str) -> Grant:
    """The grantee's active grant on ``artifact``, or a recorded 410/403 saying why not."""
    require_available(gw, who, action, artifact)
    now = gw.now()
    with gw.db.session() as session:
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
        if grant_state(g, now) == "active" and g.not_before <= now:
            return g
    state = latest.state if latest is not None else "none"
    if latest is not None and state in ("pending", "denied", "cancelled"):
        forbid(
            gw,
            who,
            action,
            f"request {state}",
            f"access request {latest.id} is {state}"
            + (": the lab has not decided yet" if state == "pending" else ""),
            artifact=artifact,
        )
    ended = next(
        (g for g in grants if latest is not None and g.id == latest.grant_id),
        grants[0] if grants else None,
    )
    if ended is not None:
        state = grant_state(ended, now)
        forbid(
            gw,
            who,
            action,
            f"grant {state}",
            f"grant {ended.id} is {state} (it ended at {rfc3339(ended.ended_at or ended.not_after)})",
            artifact=artifact,
            grant=ended.id,
        )
    forbid(
        gw,
        who,
        action,
        "no grant",
        f"no active grant on artifact {artifact.id}: request access first",
        artifact=artifact,
    )


# --- key release --------------------------------------------------------------------------


def release(gw: Gateway, who: Actor, artifact: Artifact, grant: Grant, action: str) -> bytes:
    """The grant's age header for the grantee's recipient, made (and logged) on first use."""
    with gw.db.session() as session:
        principal = session.get(Principal, who.id)
        recipient = principal.recipient if principal else None
    if recipient is None:
        refuse(
            gw,
            who,
            action,
            "no recipient",
            Conflict(
                "no recipient is registered: PUT /v1/me/recipient with your age recipient first"
            ),
            artifact=artifact,
            grant=grant.id,
        )
    if grant.header is not None:
        return _released(gw, who, artifact, grant, recipient, action)
    identity = _custody(gw, who, artifact, grant, action)
    raw = b"".join(read_range(gw, artifact.object_key, 0, artifact.header_size))
    header = age.read_header(io.BytesIO(raw), max_size=max(len(raw), 1024))
    made = age.reheader(header, [identity], [age.parse_recipient(recipient)])
    with events.fail_closed(gw) as session:
        if session.get(CustodyKey, artifact.upload_id) is None:
            raise Gone(f"artifact {artifact.id} has been shredded")
        stored = changed(
            session,
            update(Grant)
            .where(Grant.id == grant.id, Grant.state == "active", Grant.header.is_(None))
            .values(header=made, recipient=recipient, released_at=gw.now()),
        )
        if stored:
            events.record(
                gw,
                session,
                "key.release",
                who,
                artifact=artifact.id,
                grant=grant.id,
                subject_org=artifact.org,
                details={
                    "recipient": recipient,
                    "header_sha256": hashlib.sha256(made).hexdigest(),
                    "header_size": len(made),
                },
            )
    if stored:
        return made
    with gw.db.session() as session:  # released meanwhile by a concurrent request, or ended
        current = session.get(Grant, grant.id)
    if current is None or current.header is None:
        forbid(
            gw,
            who,
            action,
            "grant ended",
            f"grant {grant.id} has ended",
            artifact=artifact,
            grant=grant.id,
        )
    return _released(gw, who, artifact, current, recipient, action)


def _released(
    gw: Gateway, who: Actor, artifact: Artifact, grant: Grant, recipient: str, action: str
) -> bytes:
    if grant.recipient != recipient:
        refuse(
            gw,
            who,
            action,
            "recipient changed since key release",
            Conflict(
                f"the key of grant {grant.id} was released to recipient {grant.recipient}; it is never "
                "released twice: register that recipient again, or ask for a new grant",
                released_to=grant.recipient,
            ),
            artifact=artifact,
            grant=grant.id,
        )
    assert grant.header is not None
    return grant.header


def _custody(gw: Gateway, who: Actor, artifact: Artifact, grant: Grant, action: str) -> Any:
    with gw.db.session() as session:
        try:
            return uploads.custody_identity(gw, session, artifact.upload_id)
        except Gone as exc:
            error = exc
    refuse(gw, who, action, "key shredded", error, artifact=artifact, grant=grant.id)


# --- ranges and streams ------------------------------------------------------------------------


def parse_range(value: str | None, total: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range, None to send everything.

    Raises :class:`RangeNotSatisfiable` when the range starts at or past ``total``.
    """
    if not value:
        return None
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if (
        not dash
        or not (first.isdigit() or last.isdigit())
        or (first and not first.isdigit())
        or (last and not last.isdigit())
    ):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(
                f"an empty suffix range cannot be satisfied; the content is {total} bytes",
                size=total,
            )
        return max(0, total - n), total
    start = int(first)
    end = int(last) + 1 if last else total
    if last and end <= start:
        return None
    if start >= total:
        raise RangeNotSatisfiable(
            f"range starts at byte {start} but the content is {total} bytes", size=total
        )
    return start, min(end, total)


def read_range(gw: Gateway, key: str, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of a stored object, in the store's chunks."""
    if end <= start:
        return iter(())
    from gateway.services.uploads import store_unavailable
    from gateway.storage import StorageError

    try:
        return gw.store.open_read(key, start, end)
    except FileNotFoundError:
        raise Gone("the stored object is no longer there") from None
    except StorageError as exc:
        raise store_unavailable(exc) from None


def primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Fetch the first chunk now, so a missing object is an error before the status line."""
    from gateway.services.uploads import store_unavailable
    from gateway.storage import StorageError

    try:
        first = next(chunks, b"")
    except FileNotFoundError:
        raise Gone("the stored object is no longer there") from None
    except StorageError as exc:
        raise store_unavailable(exc) from None

    def rest() -> Iterator[bytes]:
        if first:
            yield first
        yield from chunks

    return rest()


def _content_chunks(
    gw: Gateway, artifact: Artifact, header: bytes, start: int, end: int
) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of ``header + object[header_size:]``."""
    head = header[start:end]
    payload_start = max(start, len(header)) - len(header) + artifact.header_size
    payload_end = end - len(header) + artifact.header_size
    rest = primed(read_range(gw, artifact.object_key, payload_start, payload_end))
    if not head:
        return rest

    def chained() -> Iterator[bytes]:
        yield head
        yield from rest

    return chained()


def _answer(
    total: int, wanted: tuple[int, int] | None, etag: str
) -> tuple[int, int, int, dict[str, str]]:
    start, end = wanted or (0, total)
    headers = {
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Type": "application/octet-stream",
    }
    if wanted is None:
        return 200, start, end, headers
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
    return 206, start, end, headers


def _wanted(
    gw: Gateway,
    who: Actor,
    artifact: Artifact,
    grant: str,
    range_header: str | None,
    if_range: str | None,
    etag: str,
    total: int,
) -> tuple[int, int] | None:
    if if_range is not None and if_range.strip() != etag:
        return None  # the representation changed: send it whole (RFC 9110 section 13.1.5)
    try:
        return parse_range(range_header, total)
    except RangeNotSatisfiable as exc:
        refuse(gw, who, "content.read", "range past the end", exc, artifact=artifact, grant=grant)


def download(
    gw: Gateway,
    who: Actor,
    artifact: Artifact,
    range_header: str | None,
    if_range: str | None = None,
) -> Download:
    """``GET /v1/artifacts/{id}/content``: refusals, key release, audit entry, then the stream."""
    grant = active_grant(gw, who, artifact, "content.read")
    header = release(gw, who, artifact, grant, "content.read")
    total = len(header) + artifact.size - artifact.header_size
    etag = f'"{artifact.id}.{grant.id}"'
    wanted = _wanted(gw, who, artifact, grant.id, range_header, if_range, etag, total)
    status, start, end, headers = _answer(total, wanted, etag)
    with events.fail_closed(gw) as session:
        events.record(
            gw,
            session,
            "content.download",
            who,
            artifact=artifact.id,
            grant=grant.id,
            subject_org=artifact.org,
            details={
                "range": [start, end - 1],
                "bytes": end - start,
                "total": total,
                "via": "gateway",
            },
        )
    return Download(status, headers, _content_chunks(gw, artifact, header, start, end))


# --- download URLs -----------------------------------------------------------------------------


def _unix(t: datetime) -> int:
    return int(t.replace(tzinfo=UTC).timestamp())


def url_signature(key: bytes, artifact_id: str, grant_id: str, expires: int) -> str:
    message = f"gateway-download-v1\n{artifact_id}\n{grant_id}\n{expires}".encode()
    return (
        base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest())
        .decode()
        .rstrip("=")
    )


def issue_url(gw: Gateway, who: Actor, artifact: Artifact, base_url: str) -> dict[str, Any]:
    """``POST .../download-url``: the grantee's header and a URL of the stored object."""
    grant = active_grant(gw, who, artifact, "content.read")
    header = release(gw, who, artifact, grant, "content.read")
    now = gw.now()
    expires_at = min(
        now + timedelta(seconds=gw.config.access.download_url_ttl_seconds),
        grant.not_after,
        artifact.review_ends_at,
    )
    seconds = int((expires_at - now).total_seconds())
    if seconds < 1:
        forbid(
            gw,
            who,
            "content.read",
            "grant expired",
            f"grant {grant.id} has ended",
            artifact=artifact,
            grant=grant.id,
        )
    presigned = gw.store.presign_get(artifact.object_key, seconds)
    url = presigned
    if url is None:
        expires = _unix(now) + seconds
        query = urlencode(
            {
                "grant": grant.id,
                "expires": expires,
                "sig": url_signature(gw.url_key, artifact.id, grant.id, expires),
            }
        )
        url = f"{base_url.rstrip('/')}{URL_ROUTE}{artifact.id}?{query}"
    with events.fail_closed(gw) as session:
        events.record(
            gw,
            session,
            "url.issue",
            who,
            artifact=artifact.id,
            grant=grant.id,
            subject_org=artifact.org,
            details={
                "expires_at": rfc3339(expires_at),
                "payload_offset": artifact.header_size,
                "presigned": presigned is not None,
            },
        )
    return {
        "header": base64.b64encode(header).decode(),
        "url": url,
        "payload_offset": artifact.header_size,
        "expires_at": rfc3339(expires_at),
        "grant": grant.id,
    }


def signed_download(
    gw: Gateway, artifact_id: str, args: dict[str, str], range_header: str | None
) -> Download:
    """``GET /download/{id}?grant=&expires=&sig=``: the stored object under a gateway-signed URL."""
    grant_id, sig = args.get("grant", ""), args.get("sig", "")
    try:
        expires = int(args.get("expires", ""))
    except ValueError:
        raise Forbidden("the download URL is not valid") from None
    good = url_signature(gw.url_key, artifact_id, grant_id, expires)
    if not hmac.compare_digest(good.encode(), sig.encode()):
        raise Forbidden("the download URL is not valid")  # anonymous: counted, not logged
    with gw.db.session() as session:
        grant = session.get(Grant, grant_id)
        artifact = session.get(Artifact, artifact_id)
        principal = session.get(Principal, grant.grantee_id) if grant else None
    if grant is None or artifact is None or principal is None or grant.artifact_id != artifact_id:
        raise Forbidden("the download URL is not valid")
    who = Actor(id=principal.id, name=principal.name, org=principal.org, role=principal.role)
    require_available(gw, who, "content.read", artifact)
    if _unix(gw.now()) >= expires:
        forbid(
            gw,
            who,
            "content.read",
            "url expired",
            "the download URL has expired",
            artifact=artifact,
            grant=grant.id,
        )
    state = grant_state(grant, gw.now())
    if state != "active":
        forbid(
            gw,
            who,
            "content.read",
            f"grant {state}",
            f"grant {grant.id} is {state}",
            artifact=artifact,
            grant=grant.id,
        )
    etag = f'"{artifact.id}.stored"'
    wanted = _wanted(gw, who, artifact, grant.id, range_header, None, etag, artifact.size)
    status, start, end, headers = _answer(artifact.size, wanted, etag)
    with events.fail_closed(gw) as session:
        events.record(
            gw,
            session,
            "content.download",
            who,
            artifact=artifact.id,
            grant=grant.id,
            subject_org=artifact.org,
            details={
                "range": [start, end - 1],
                "bytes": end - start,
                "total": artifact.size,
                "via": "url",
            },
        )
    return Download(status, headers, primed(read_range(gw, artifact.object_key, start, end)))
