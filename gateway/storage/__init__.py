"""The object store: one small interface, two backends chosen in config.

``local`` keeps objects in a directory on one machine; ``s3`` keeps them in an S3 bucket
(AWS or any S3-compatible store: MinIO, Ceph RGW, moto). Both implement
:class:`ObjectStore`, and one contract test suite (``tests/storage/``) runs against both.

An upload is written in parts, in any order, each part streamed from the request body
in bounded chunks while its SHA-256 is computed; a part whose digest differs from the
one declared, or whose body ends early, is refused and nothing of it is kept (an earlier
stored version of the same part number stays intact). Completion assembles the parts
into one object under ``key``. Reads stream byte ranges in bounded chunks. Nothing here
holds a whole part or object in memory.

Keys are relative paths of ``[A-Za-z0-9._-]`` segments separated by ``/``
(``artifacts/up_123.age``). The ``s3`` backend puts ``settings.prefix`` in front of
every key; the ``local`` backend keeps objects under ``settings.root / "objects"``.

Use::

    store = make_store(settings)                       # once, at start-up
    handle = store.begin_upload(key)                   # keep the handle with the upload
    part = store.put_part(key, handle, n, (n - 1) * part_size, length, request.stream, sha256_hex)
    store.complete_upload(key, handle, parts, total_size)   # the StoredParts, from your records
    for chunk in store.open_read(key, start, end):     # end exclusive
        ...

Errors: :class:`DigestMismatch` and :class:`TruncatedBody` are the client's fault (nothing
kept); :class:`NotFound` (no such object) and :class:`UploadNotFound` (the upload is no
longer held); :class:`PartTooLarge` (refused before reading); :class:`InvalidPart` (the
request or the completion does not fit what is stored); any other :class:`StorageError` is
the store's own failure. What each means to a client is decided in one place,
:func:`gateway.services.objects.store_errors` (an upload the store no longer holds is 410
there, the store's own failures 503).
"""

from __future__ import annotations

from typing import Any

from gateway.storage.base import (
    CHUNK,
    MAX_PART_NUMBER,
    MAX_PART_SIZE,
    SHA256_HEX,
    AccessDenied,
    DigestMismatch,
    HashingReader,
    InvalidKey,
    InvalidPart,
    NotFound,
    ObjectStore,
    PartTooLarge,
    StorageError,
    StorageSettings,
    StoredPart,
    TruncatedBody,
    UploadNotFound,
    check_key,
    check_part,
)

__all__ = [
    "AccessDenied",
    "CHUNK",
    "DigestMismatch",
    "HashingReader",
    "InvalidKey",
    "InvalidPart",
    "MAX_PART_NUMBER",
    "MAX_PART_SIZE",
    "NotFound",
    "ObjectStore",
    "PartTooLarge",
    "SHA256_HEX",
    "StorageError",
    "StorageSettings",
    "StoredPart",
    "TruncatedBody",
    "UploadNotFound",
    "check_key",
    "check_part",
    "make_store",
]


def make_store(settings: StorageSettings, *, session: Any = None) -> ObjectStore:
    """The backend named by ``settings.backend`` (``session``: a boto3 session to share, for ``s3``)."""
    # Imported here: each backend imports this module's contract, and only the chosen
    # backend is loaded (``s3`` brings boto3).
    if settings.backend == "local":
        from gateway.storage.local import LocalStore

        return LocalStore(settings.root)
    if settings.backend == "s3":
        from gateway.storage.s3 import S3Store

        return S3Store(settings, session=session)
    raise StorageError(f'unknown storage backend {settings.backend!r} (expected "local" or "s3")')
