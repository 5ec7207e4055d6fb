"""Content: what a download sends, its audit entry, the stream's re-checks, download URLs.

Content is ``header + object[header_size:]``: the grantee's own header (made once per grant,
:mod:`gateway.services.release`) before the stored payload, streamed in the store's chunks,
never read whole. :func:`plan` says what a download under the caller's grant would send;
the API decides which bytes of it a request asks for, and :func:`open_range` hands them out.

A transfer happens only while its grant does:

- :func:`open_range` re-reads the grant (active, inside its time, its header the one
  planned, its grantee holding a valid token) and the artifact (available, inside its
  window) and appends the ``content.download`` entry, with the planned range, in one
  transaction (the grant's row locked), so no ``ok`` download can follow the grant's
  revocation or the artifact's withdrawal in the log;
- the body then streams in windows: before each chunk that starts a new window
  (``access.recheck_bytes`` bytes or ``access.recheck_seconds`` seconds since the last
  check, whichever comes first) the same conditions are read again. Once one fails, the
  stream stops with :class:`TransferCut` (the client sees a body shorter than its
  ``Content-Length``) and a ``content.cut`` entry records how many bytes were handed out
  and why. The time bound holds for a client that reads slowly: a check is due as soon as
  the next chunk is asked for, and how long one chunk may take to send is the worker's
  minimum send rate's to bound. An open file of a shredded local object is ended the
  same way, and so is a stream whose store fails half-way (reason ``object store failed``).

A gateway-signed download URL (:mod:`gateway.services.urls`) is served through the same
:func:`open_range`, so it is checked, logged and re-checked the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import authz, events
from gateway.caller import Caller
from gateway.errors import Forbidden, GatewayError, Gone, RangeNotSatisfiable
from gateway.models import Artifact, ArtifactState, Grant, GrantState, Token
from gateway.runtime import Runtime
from gateway.services.objects import store_errors
from gateway.services.release import active_grant, read_range, release, released_header
from gateway.storage import StorageError

log = logging.getLogger("gateway.content")

VIA_GATEWAY, VIA_URL = "gateway", "url"
TOKENS_ENDED = "grantee has no valid token"
STORE_FAILED = "object store failed"


class TransferCut(Exception):
    """A transfer stopped because its grant or artifact ended while it streamed."""

    def __init__(self, reason: str, sent: int) -> None:
        super().__init__(f"transfer cut after {sent} bytes: {reason}")
        self.reason, self.sent = reason, sent


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
class Unreleased:
    """A ``HEAD`` before the grant's key was ever released.

    A HEAD makes no header, so the length of the content (which starts with it) is not
    known yet; ``tag`` is the one the content will have once a GET releases the key.
    """

    tag: str


def head(rt: Runtime, caller: Caller, artifact: Artifact) -> ContentPlan | Unreleased:
    """What a GET would send, found without releasing the key and without logging a download.

    Refusals (no grant, no recipient, another recipient) are those of a GET, recorded alike.
    """
    grant = active_grant(rt, caller, artifact, "content.read")
    header = released_header(rt, caller, grant, "content.read")
    if header is None:
        return Unreleased(f"{artifact.id}.{grant.id}")
    total = len(header) + artifact.size - artifact.header_size
    return ContentPlan(caller, artifact, grant, total, header)


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


# --- the grant, checked ------------------------------------------------------------------


def ended(
    session: Session, content: ContentPlan, now: datetime, *, lock: bool = False
) -> str | None:
    """Why ``content`` may no longer be sent (an ``auth.denied`` reason), or None if it may.

    With ``lock`` the grant's row is locked (``FOR UPDATE``; SQLite serialises anyway), the
    row a revocation, an expiry and a withdrawal each update, so an entry appended in this
    transaction lands wholly before or wholly after theirs.
    """
    query = select(Grant.state, Grant.not_after, Grant.header, Grant.grantee_id).where(
        Grant.id == content.grant.id
    )
    grant = session.execute(query.with_for_update() if lock else query).one_or_none()
    artifact = session.execute(
        select(Artifact.state, Artifact.review_ends_at).where(Artifact.id == content.artifact.id)
    ).one_or_none()
    if grant is None or artifact is None:
        return "grant ended"
    if artifact.state != ArtifactState.AVAILABLE:
        return f"artifact {artifact.state}"
    if artifact.review_ends_at <= now:
        return "review window ended"
    if grant.state != GrantState.ACTIVE:
        return f"grant {grant.state}"
    if grant.not_after <= now:
        return "grant expired"
    if content.header is not None and grant.header != content.header:
        return "grant ended"
    if not has_valid_token(session, grant.grantee_id, now):
        return TOKENS_ENDED
    return None


def has_valid_token(session: Session, principal_id: str, now: datetime) -> bool:
    """Whether the principal still holds a token that is neither revoked nor expired."""
    return (
        session.scalars(
            select(Token.id)
            .where(
                Token.principal_id == principal_id,
                Token.revoked_at.is_(None),
                Token.expires_at > now,
            )
            .limit(1)
        ).first()
        is not None
    )


def _refuse_ended(rt: Runtime, content: ContentPlan, reason: str) -> NoReturn:
    """The recorded refusal of a download whose grant or artifact ended before it began."""
    if reason.startswith("artifact") or reason == "review window ended":
        error: GatewayError = Gone(f"artifact {content.artifact.id}: {reason}; nothing was sent")
    else:
        error = Forbidden(f"grant {content.grant.id}: {reason}; nothing was sent", reason=reason)
    authz.refuse(rt, content.caller, "content.read", reason, error, subject=content.grant)


# --- the transfer ------------------------------------------------------------------------


def open_range(rt: Runtime, content: ContentPlan, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of ``content``, checked and logged first, re-checked as they stream.

    The store is opened and its first chunk read before the entry is appended, so a
    missing object or a failing store is an error here, before any answer has begun,
    and the log holds no download the store could not have served.
    """
    artifact = content.artifact
    if content.header is None:
        pieces = _primed(read_range(rt, artifact.object_key, start, end))
    else:
        pieces = _with_header(rt, content, start, end)
    try:
        with events.fail_closed(rt) as session:
            reason = ended(session, content, rt.now(), lock=True)
            if reason is None:
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
    except BaseException:
        _close(pieces)
        raise
    if reason is not None:
        _close(pieces)
        _refuse_ended(rt, content, reason)
    return _rechecked(rt, content, pieces, (start, end))


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _with_header(rt: Runtime, content: ContentPlan, start: int, end: int) -> Iterator[bytes]:
    header = content.header or b""
    artifact = content.artifact
    payload_start = max(start, len(header)) - len(header) + artifact.header_size
    payload_end = end - len(header) + artifact.header_size
    return _primed(
        read_range(rt, artifact.object_key, payload_start, payload_end), header[start:end]
    )


def _primed(chunks: Iterator[bytes], head: bytes = b"") -> Iterator[bytes]:
    """``head``, then ``chunks``, whose first chunk is fetched now: a missing object is an
    error before the status line."""
    with store_errors():
        first = next(chunks, b"")
    return _Pieces([p for p in (head, first) if p], chunks)


class _Pieces:
    """Pieces already in hand, then the rest of a store's chunks; closing closes the store's reader."""

    def __init__(self, ready: list[bytes], chunks: Iterator[bytes]) -> None:
        self._ready, self._chunks = ready, chunks

    def __iter__(self) -> _Pieces:
        return self

    def __next__(self) -> bytes:
        if self._ready:
            return self._ready.pop(0)
        return next(self._chunks)

    def close(self) -> None:
        _close(self._chunks)


def _rechecked(
    rt: Runtime, content: ContentPlan, pieces: Iterator[bytes], planned: tuple[int, int]
) -> Iterator[bytes]:
    """``pieces``, the grant and artifact checked again before each new window."""
    limits = rt.config.access
    sent = window = 0
    checked = time.monotonic()
    try:
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                return
            except StorageError as exc:
                log.error("the store failed under grant %s: %s", content.grant.id, exc)
                _record_cut(rt, content, planned, sent, STORE_FAILED)
                raise TransferCut(STORE_FAILED, sent) from None
            elapsed = time.monotonic() - checked
            if window >= limits.recheck_bytes or elapsed >= limits.recheck_seconds:
                reason = _recheck(rt, content)
                if reason is not None:
                    _record_cut(rt, content, planned, sent, reason)
                    raise TransferCut(reason, sent)
                window, checked = 0, time.monotonic()
            yield piece
            sent += len(piece)
            window += len(piece)
    finally:
        _close(pieces)


def _recheck(rt: Runtime, content: ContentPlan) -> str | None:
    """:func:`ended`, read-only; a check that cannot be made fails closed (the stream stops)."""
    try:
        with rt.db.session() as session:
            return ended(session, content, rt.now())
    except Exception as exc:  # noqa: BLE001 - whatever stops the check stops the transfer
        log.error("could not re-check grant %s, stopping its transfer: %s", content.grant.id, exc)
        return "grant could not be checked"


def _record_cut(
    rt: Runtime, content: ContentPlan, planned: tuple[int, int], sent: int, reason: str
) -> None:
    """The ``content.cut`` entry; a cut that cannot be logged still stops the transfer."""
    start, end = planned
    artifact = content.artifact
    try:
        with events.fail_closed(rt) as session:
            events.record(
                rt,
                session,
                "content.cut",
                content.caller,
                artifact=artifact.id,
                grant=content.grant.id,
                subject_org=artifact.org,
                outcome="denied",
                details={
                    "range": [start, end - 1],
                    "sent": sent,
                    "reason": reason,
                    "via": content.via,
                },
            )
    except GatewayError as exc:
        log.error(
            "transfer under grant %s cut (%s) but not logged: %s", content.grant.id, reason, exc
        )
