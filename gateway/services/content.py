"""Content: what a download sends, its audit entry, and time-limited download URLs.

Content is ``header + object[header_size:]``: the grantee's own header (made once per grant,
:mod:`gateway.services.release`) before the stored payload, streamed in the store's chunks,
never read whole. :func:`plan` says what a download under the caller's grant would send;
the API decides which bytes of it a request asks for, and :func:`open_range` records the
``content.download`` entry, with the byte range, before it hands out the first byte.

Download URLs: presigned by the store where it can (S3, at most
``access.download_url_ttl_seconds`` and never past the grant or the window); on the local
store the gateway signs ``artifact, grant, expiry`` (:mod:`gateway.services.urls`) and
serves the stored object itself, checking the signature and the grant again on each use
(:func:`signed_plan`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

from gateway import authz, events
from gateway.caller import Actor, Caller, RequestMeta
from gateway.clock import rfc3339
from gateway.errors import Forbidden, RangeNotSatisfiable
from gateway.models import Artifact, Grant, GrantState, Principal
from gateway.runtime import Runtime
from gateway.services import urls
from gateway.services.artifacts import require_available
from gateway.services.objects import store_errors
from gateway.services.release import active_grant, read_range, release

VIA_GATEWAY, VIA_URL = "gateway", "url"


@dataclass(frozen=True)
class ContentPlan:
    """What a download would send, ``total`` bytes, before any byte is chosen or sent.

    ``header`` is the grantee's age header, sent before the stored payload; None when the
    stored object is sent as it is (a gateway-signed URL). ``tag`` names this exact
    sequence of bytes, so a resumed download can tell it has not changed.
    """

    caller: Caller
    artifact: Artifact
    grant: Grant
    total: int
    header: bytes | None = field(default=None, repr=False)

    @property
    def via(self) -> str:
        return VIA_URL if self.header is None else VIA_GATEWAY

    @property
    def tag(self) -> str:
        return f"{self.artifact.id}.{'stored' if self.header is None else self.grant.id}"


@dataclass(frozen=True)
class SignedUrl:
    """What a gateway-signed URL carries: the artifact, the grant, its expiry and signature."""

    artifact_id: str
    grant_id: str
    expires: int
    signature: str


@dataclass(frozen=True)
class IssuedUrl:
    """A download URL issued under a grant, with the grantee's header.

    ``presigned`` is the store's own URL; when None, the gateway serves the object itself
    under ``signature`` (of the artifact, the grant and ``expires``, Unix seconds).
    """

    header: bytes = field(repr=False)
    grant: str
    payload_offset: int
    expires_at: datetime
    expires: int
    presigned: str | None
    signature: str | None


def plan(rt: Runtime, caller: Caller, artifact: Artifact) -> ContentPlan:
    """The caller's download of ``artifact``: under its active grant, its key released."""
    grant = active_grant(rt, caller, artifact, "content.read")
    header = release(rt, caller, artifact, grant, "content.read")
    total = len(header) + artifact.size - artifact.header_size
    return ContentPlan(caller, artifact, grant, total, header)


def refuse_range(rt: Runtime, content: ContentPlan, start: int) -> NoReturn:
    """A recorded 416 for a range that starts at or past the end."""
    authz.refuse(
        rt,
        content.caller,
        "content.read",
        "range past the end",
        RangeNotSatisfiable(
            f"range starts at byte {start} but the content is {content.total} bytes",
            size=content.total,
        ),
        subject=content.grant,
    )


def open_range(rt: Runtime, content: ContentPlan, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of ``content``, its ``content.download`` entry committed first.

    The store is read before this returns, so a missing object or a failing store is an
    error here, before any answer has begun.
    """
    artifact = content.artifact
    with events.fail_closed(rt) as session:
        events.record(
            rt,
            session,
            "content.download",
            content.caller,
            artifact=artifact.id,
            grant=content.grant.id,
            subject_org=artifact.org,
            details={
                "range": [start, end - 1],
                "bytes": end - start,
                "total": content.total,
                "via": content.via,
            },
        )
    if content.header is None:
        return _primed(read_range(rt, artifact.object_key, start, end))
    header = content.header
    head = header[start:end]
    payload_start = max(start, len(header)) - len(header) + artifact.header_size
    payload_end = end - len(header) + artifact.header_size
    rest = _primed(read_range(rt, artifact.object_key, payload_start, payload_end))
    if not head:
        return rest

    def chained() -> Iterator[bytes]:
        yield head
        yield from rest

    return chained()


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Fetch the first chunk now, so a missing object is an error before the status line."""
    with store_errors():
        first = next(chunks, b"")

    def rest() -> Iterator[bytes]:
        if first:
            yield first
        yield from chunks

    return rest()


# --- download URLs -----------------------------------------------------------------------------


def issue_url(rt: Runtime, caller: Caller, artifact: Artifact) -> IssuedUrl:
    """The grantee's header and a URL of the stored object, recorded as ``url.issue``."""
    grant = active_grant(rt, caller, artifact, "content.read")
    header = release(rt, caller, artifact, grant, "content.read")
    now = rt.now()
    expires_at = min(
        now + timedelta(seconds=rt.config.access.download_url_ttl_seconds),
        grant.not_after,
        artifact.review_ends_at,
    )
    seconds = int((expires_at - now).total_seconds())
    if seconds < 1:
        authz.forbid(
            rt,
            caller,
            "content.read",
            "grant expired",
            f"grant {grant.id} has ended",
            subject=grant,
        )
    with store_errors():
        presigned = rt.store.presign_get(artifact.object_key, seconds)
    expires = urls.unix(now) + seconds
    signature = None if presigned else urls.sign(rt.url_key, artifact.id, grant.id, expires)
    with events.fail_closed(rt) as session:
        events.record(
            rt,
            session,
            "url.issue",
            caller,
            artifact=artifact.id,
            grant=grant.id,
            subject_org=artifact.org,
            details={
                "expires_at": rfc3339(expires_at),
                "payload_offset": artifact.header_size,
                "presigned": presigned is not None,
            },
        )
    return IssuedUrl(
        header=header,
        grant=grant.id,
        payload_offset=artifact.header_size,
        expires_at=expires_at,
        expires=expires,
        presigned=presigned,
        signature=signature,
    )


def signed_plan(rt: Runtime, meta: RequestMeta, url: SignedUrl) -> ContentPlan:
    """The stored object under a gateway-signed URL, its grant and window checked again.

    A URL whose signature does not verify is refused without an audit entry (its holder
    is anonymous: it is counted, not logged); once it verifies, its grantee is the caller.
    """
    if not urls.verify(rt.url_key, url.artifact_id, url.grant_id, url.expires, url.signature):
        raise Forbidden("the download URL is not valid")
    with rt.db.session() as session:
        grant = session.get(Grant, url.grant_id)
        artifact = session.get(Artifact, url.artifact_id)
        principal = session.get(Principal, grant.grantee_id) if grant else None
    if (
        grant is None
        or artifact is None
        or principal is None
        or grant.artifact_id != url.artifact_id
    ):
        raise Forbidden("the download URL is not valid")
    who = Actor(id=principal.id, name=principal.name, org=principal.org, role=principal.role)
    caller = Caller(who, meta)
    require_available(rt, caller, "content.read", artifact)
    if urls.unix(rt.now()) >= url.expires:
        authz.forbid(
            rt, caller, "content.read", "url expired", "the download URL has expired", subject=grant
        )
    state = grant.state_at(rt.now())
    if state != GrantState.ACTIVE:
        authz.forbid(
            rt,
            caller,
            "content.read",
            f"grant {state}",
            f"grant {grant.id} is {state}",
            subject=grant,
        )
    return ContentPlan(caller, artifact, grant, artifact.size)
