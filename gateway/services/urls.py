"""Download URLs: issued under a grant, signed by the gateway, served and re-checked by it.

A download URL comes with the grantee's header (the key released, as for content). By
default the URL is the gateway's own: an HMAC-SHA256 over what it grants, checked in
constant time on each use (:func:`signed_plan`), with the grant, the window and the
grantee's tokens checked again; the object is then sent through
:func:`gateway.services.content.open_range`, so the use is logged and re-checked while it
streams like any download.

The signed message is domain-separated and has fixed fields, one per line (no field may
hold a newline: ids are ``[a-z0-9_]``, the expiry is decimal), so no two URLs share a
signature: ``gateway-download-v1``, the artifact id, the grant id, the expiry (Unix
seconds). The signature is URL-safe base64 without padding.

S3 presigned URLs bypass all of that: S3 checks nothing of ours, a transfer it has begun
runs to its end whatever happens to the grant, and its use is not in the audit log (only
its ``url.issue``). They are issued only when ``access.presigned_urls`` is on, and then
valid for at most ``access.recheck_seconds``, and never past the grant or the window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway import authz, events
from gateway.caller import Actor, Caller, RequestMeta
from gateway.clock import rfc3339
from gateway.errors import Forbidden
from gateway.models import Artifact, Grant, GrantState, Principal
from gateway.runtime import Runtime
from gateway.services.artifacts import require_available
from gateway.services.content import TOKENS_ENDED, ContentPlan, has_valid_token
from gateway.services.objects import store_errors
from gateway.services.release import active_grant, release

DOMAIN = "gateway-download-v1"


def sign(key: bytes, artifact_id: str, grant_id: str, expires: int) -> str:
    """The signature of a URL of ``artifact_id`` under ``grant_id`` valid until ``expires``."""
    message = f"{DOMAIN}\n{artifact_id}\n{grant_id}\n{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verify(key: bytes, artifact_id: str, grant_id: str, expires: int, signature: str) -> bool:
    """Whether ``signature`` is this URL's (compared in constant time)."""
    good = sign(key, artifact_id, grant_id, expires)
    return hmac.compare_digest(good.encode(), signature.encode())


def unix(t: datetime) -> int:
    """A naive UTC time as Unix seconds (a URL's expiry)."""
    return int(t.replace(tzinfo=UTC).timestamp())


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


def issue_url(rt: Runtime, caller: Caller, artifact: Artifact) -> IssuedUrl:
    """The grantee's header and a URL of the stored object, recorded as ``url.issue``."""
    grant = active_grant(rt, caller, artifact, "content.read")
    header = release(rt, caller, artifact, grant, "content.read")
    now = rt.now()
    limits = rt.config.access
    presigning = limits.presigned_urls
    lifetime = (
        min(limits.download_url_ttl_seconds, limits.recheck_seconds)
        if presigning
        else limits.download_url_ttl_seconds
    )
    expires_at = min(now + timedelta(seconds=lifetime), grant.not_after, artifact.review_ends_at)
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
    presigned = None
    if presigning:
        with store_errors():
            presigned = rt.store.presign_get(artifact.object_key, seconds)
    expires = unix(now) + seconds
    signature = None if presigned else sign(rt.url_key, artifact.id, grant.id, expires)
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
    is anonymous: it is counted, not logged); once it verifies, its grantee is the caller,
    and it serves only while the grantee still holds a valid token.
    """
    if not verify(rt.url_key, url.artifact_id, url.grant_id, url.expires, url.signature):
        raise Forbidden("the download URL is not valid")
    now = rt.now()
    with rt.db.session() as session:
        grant = session.get(Grant, url.grant_id)
        artifact = session.get(Artifact, url.artifact_id)
        principal = session.get(Principal, grant.grantee_id) if grant else None
        token = principal is not None and has_valid_token(session, principal.id, now)
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
    if unix(now) >= url.expires:
        authz.forbid(
            rt, caller, "content.read", "url expired", "the download URL has expired", subject=grant
        )
    state = grant.state_at(now)
    if state != GrantState.ACTIVE:
        authz.forbid(
            rt,
            caller,
            "content.read",
            f"grant {state}",
            f"grant {grant.id} is {state}",
            subject=grant,
        )
    if not token:
        authz.forbid(
            rt,
            caller,
            "content.read",
            TOKENS_ENDED,
            f"the grantee of grant {grant.id} holds no valid token any more",
            subject=grant,
        )
    return ContentPlan(caller, artifact, grant, artifact.size)
