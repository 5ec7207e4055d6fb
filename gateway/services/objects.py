"""What the object store's errors mean to a client: one mapping, used by every service.

A part whose body does not match its digest, or ends early, is the client's fault and
nothing was kept (400); one the client sent too slowly was cut, nothing kept, and may be
sent again (408); an upload the store no longer holds, or an object it no longer has, is
gone (410); parts that do not match what the store holds at completion are 422;
anything else is the store's own failure, logged here and answered 503, since the
client can retry it. A store's message never reaches the client: it may name paths.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from gateway import storage
from gateway.errors import (
    BadRequest,
    DigestMismatch,
    GatewayError,
    Gone,
    ServiceUnavailable,
    Unprocessable,
)
from gateway.storage.base import StalledBody

log = logging.getLogger("gateway.objects")


class RequestTimeout(GatewayError):
    """A part body the client sent too slowly; it may send it again."""

    status, slug, title = 408, "request-timeout", "Request timeout"


@contextmanager
def store_errors(upload_id: str | None = None) -> Iterator[None]:
    """Turn the store's errors raised inside the block into the gateway's (see above).

    ``upload_id`` names the upload in the answer when the store no longer holds it.
    """
    try:
        yield
    except storage.DigestMismatch as exc:
        raise DigestMismatch(
            f"part {exc.number}: the body's SHA-256 does not match the one declared for it; "
            "nothing was kept"
        ) from None
    except StalledBody as exc:
        raise RequestTimeout(
            f"part {exc.number}: the body arrived too slowly and was cut after {exc.received}"
            f" of {exc.expected} bytes; nothing was kept, send it again"
        ) from None
    except storage.TruncatedBody as exc:
        raise BadRequest(
            f"part {exc.number}: the body ended before its declared length; nothing was kept"
        ) from None
    except storage.UploadNotFound:
        what = f"upload {upload_id}" if upload_id else "the upload"
        raise Gone(f"{what} is no longer open") from None
    except storage.InvalidPart as exc:
        raise Unprocessable(f"the object store does not hold the parts as listed: {exc}") from None
    except FileNotFoundError:  # storage.NotFound is one
        raise Gone("the stored object is no longer there") from None
    except storage.AccessDenied as exc:
        log.error("object store refused the gateway: %s", exc)
        raise ServiceUnavailable(
            "the object store refused the gateway access (its credentials or the bucket policy); "
            "nothing was changed"
        ) from None
    except storage.StorageError as exc:
        raise store_unavailable(exc) from None


def store_unavailable(exc: Exception) -> ServiceUnavailable:
    """A store failure the client can retry: logged here, a 503 for the client."""
    log.error("object store failure: %s", exc)
    return ServiceUnavailable(
        "the object store is unavailable; nothing was changed, try again later"
    )


def discard(store: storage.ObjectStore, key: str) -> None:
    """Delete an object nothing refers to, best effort: one left behind is logged, not retried."""
    try:
        store.delete(key)
    except storage.StorageError as exc:
        log.warning("could not delete orphan object %s: %s", key, exc)
