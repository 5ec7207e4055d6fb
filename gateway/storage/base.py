"""The object store's contract: errors, values, the :class:`ObjectStore` protocol, shared checks.

The backends (``local``, ``s3``) and the package's :func:`~gateway.storage.make_store`
import it; it imports none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from gateway.canonical import HEX64
from gateway.config import Config, StorageConfig

CHUNK = 1 << 20
"""Bytes moved per read or write: the bound on memory per stream."""

MAX_PART_SIZE = 5 << 30
"""S3's largest part (5 GiB); both backends and the upload service enforce it."""

MAX_PART_NUMBER = 10_000
"""S3's highest part number."""

SHA256_HEX = HEX64
"""A SHA-256 digest as lower-case hex, as parts are declared and listed."""

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


# --- errors -----------------------------------------------------------------------------


class StorageError(Exception):
    """Base of every error the object store raises."""


class NotFound(StorageError, FileNotFoundError):
    """No object (or no upload) under that key or handle."""


class UploadNotFound(NotFound):
    """The upload handle is unknown: never begun, completed, aborted or cleaned up."""


class AccessDenied(StorageError):
    """The store refused the gateway for want of permission: its credentials, or a bucket policy.

    Unlike a store that is down, retrying changes nothing until an operator acts; the
    message says what was refused and where to look.
    """


class InvalidKey(StorageError, ValueError):
    """A key or name that is not a relative path of safe segments."""


class DigestMismatch(StorageError):
    """The part's bytes do not hash to the declared SHA-256; nothing was kept."""

    def __init__(self, number: int, expected: str, actual: str) -> None:
        super().__init__(
            f"part {number}: SHA-256 of the body is {actual}, expected {expected}; nothing was kept"
        )
        self.number, self.expected, self.actual = number, expected, actual


class TruncatedBody(StorageError):
    """The body ended before ``length`` bytes; nothing was kept."""

    def __init__(self, number: int, expected: int, received: int) -> None:
        super().__init__(
            f"part {number}: the body ended after {received} of {expected} bytes; nothing was kept"
        )
        self.number, self.expected, self.received = number, expected, received


class StalledBody(TruncatedBody):
    """The client sent the body slower than the server allows, and was cut; nothing was kept.

    Raised for any :class:`TimeoutError` of the body being read: the server's edge raises
    one (``gateway.edge.Stalled``) when a client stops sending or falls below the minimum
    rate. A client that stalled may retry; one whose body was short may not.
    """


class PartTooLarge(StorageError):
    """A part longer than :data:`MAX_PART_SIZE` (refused before reading anything)."""


class InvalidPart(StorageError):
    """A part number out of range, or a part listed at completion that the store does not hold."""


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageSettings(StorageConfig):
    """Everything a backend needs: the ``[storage]`` settings, and where the local audit archive is.

    Build it from a configuration with :meth:`from_config`; tests build it directly.
    ``policy_template`` None means the bucket policy packaged with the gateway.
    """

    audit_dir: Path = Path("var/audit")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "audit_dir", Path(self.audit_dir))

    @classmethod
    def from_config(cls, config: Config) -> StorageSettings:
        """The settings of ``config``: its ``[storage]`` section and ``audit.archive_dir``."""
        section = {f.name: getattr(config.storage, f.name) for f in fields(StorageConfig)}
        return cls(**section, audit_dir=Path(config.audit.archive_dir))


@dataclass(frozen=True)
class StoredPart:
    """A part the store holds: its number, size, hex SHA-256 and backend tag (S3 ETag)."""

    number: int
    size: int
    sha256: str
    etag: str


# --- the interface ----------------------------------------------------------------------


@runtime_checkable
class ObjectStore(Protocol):
    """What the gateway needs from an object store. Every method may raise :class:`StorageError`."""

    def begin_upload(self, key: str) -> str:
        """Start a multipart upload of ``key``; returns the backend's handle for it."""
        ...

    def put_part(
        self,
        key: str,
        handle: str,
        number: int,
        offset: int,
        length: int,
        stream: BinaryIO,
        sha256_hex: str,
    ) -> StoredPart:
        """Store part ``number`` (1..10000), which starts at byte ``offset`` of the object.

        Reads exactly ``length`` bytes from ``stream`` in bounded chunks, hashing them.
        Raises :class:`DigestMismatch` or :class:`TruncatedBody` with nothing kept and an
        earlier version of the part unharmed; :class:`PartTooLarge` before reading when
        ``length`` exceeds :data:`MAX_PART_SIZE`. Sending a part again replaces it.
        """
        ...

    def stored_parts(self, key: str, handle: str) -> list[StoredPart]:
        """The parts the store holds for this upload, by number (for resuming and checks).

        ``sha256`` is empty where the store does not report part checksums (moto).
        """
        ...

    def complete_upload(
        self, key: str, handle: str, parts: list[StoredPart], total_size: int
    ) -> None:
        """Assemble ``parts`` (as returned by :meth:`put_part`) into the object ``key``.

        Raises :class:`InvalidPart` when a listed part is not held as described or the
        parts do not cover ``total_size`` bytes contiguously.
        """
        ...

    def abort_upload(self, key: str, handle: str) -> None:
        """Discard an upload and every stored part; an unknown handle is not an error."""
        ...

    def cleanup_stale_uploads(self, older_than: datetime) -> int:
        """Abort uploads begun (local: last written) before ``older_than`` (naive = UTC)."""
        ...

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; ``None`` = the end) in chunks of at most :data:`CHUNK`.

        Opens eagerly, so :class:`NotFound` is raised by this call, not by the first
        ``next()``. A range past the end is cut at the end. Close the iterator to release
        the underlying file or connection early.
        """
        ...

    def read_prefix(self, key: str, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the object is shorter)."""
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes; :class:`NotFound` if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the object for good (S3: every version); False when there was none."""
        ...

    def presign_get(self, key: str, expires_in_seconds: int) -> str | None:
        """A time-limited URL the store serves itself, or ``None`` (local: the gateway serves)."""
        ...

    def check_writable(self) -> None:
        """Write and remove a probe object; raises :class:`StorageError` if that fails."""
        ...


# --- shared helpers ---------------------------------------------------------------------


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(seg in (".", "..") for seg in key.split("/")):
        raise InvalidKey(
            f"invalid object key {key!r}: expected segments of A-Z a-z 0-9 . _ - separated by /"
        )
    return key


def check_part(number: int, offset: int, length: int, sha256_hex: str) -> str:
    """Validate a part request before anything is read; returns the digest in lower case."""
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidPart(f"part number {number} is out of range 1..{MAX_PART_NUMBER}")
    if length > MAX_PART_SIZE:
        raise PartTooLarge(
            f"part {number} is {length} bytes; a part may be at most {MAX_PART_SIZE} bytes"
        )
    if length < 0 or offset < 0:
        raise InvalidPart(f"part {number}: offset and length must not be negative")
    digest = sha256_hex.lower()
    if not SHA256_HEX.match(digest):
        raise InvalidPart(f"part {number}: {sha256_hex!r} is not a hex SHA-256")
    return digest


class HashingReader:
    """Reads exactly ``length`` bytes of ``inner`` in bounded chunks, hashing as it goes.

    A body that ends early, or whose ``read`` fails (a client that disconnected), raises
    :class:`TruncatedBody`; one whose ``read`` timed out (a client that stalled) raises
    :class:`StalledBody`.

    Before handing out the last bytes it compares the digest with the declared one and
    raises instead, so a consumer that forwards the bytes (an HTTP request to S3) never
    completes a wrong or short body. The first failure is kept in :attr:`failure` for
    callers whose transport wraps exceptions. Not seekable on purpose: a transport must
    stream it once and may not rewind it.
    """

    def __init__(self, inner: BinaryIO, number: int, length: int, sha256_hex: str) -> None:
        self._inner, self.number, self.length, self.expected = inner, number, length, sha256_hex
        self._hash = hashlib.sha256()
        self.received = 0
        self.failure: StorageError | None = None

    def read(self, n: int = -1) -> bytes:
        if self.failure is not None:
            raise self.failure
        remaining = self.length - self.received
        want = remaining if n is None or n < 0 else min(n, remaining)
        if want == 0:
            return b""
        pieces: list[bytes] = []
        got = 0
        while got < want:
            try:
                piece = self._inner.read(min(CHUNK, want - got))
            except TimeoutError as exc:  # the client stalled: cut by the server's edge
                self.failure = StalledBody(self.number, self.length, self.received + got)
                raise self.failure from exc
            except Exception as exc:  # a client that went away mid-body: the body ended early
                self.failure = TruncatedBody(self.number, self.length, self.received + got)
                raise self.failure from exc
            if not piece:
                self._fail(TruncatedBody(self.number, self.length, self.received + got))
            pieces.append(piece)
            got += len(piece)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._hash.update(data)
        self.received += got
        if self.received == self.length:
            self.verify()
        return data

    def verify(self) -> None:
        actual = self._hash.hexdigest()
        if not hmac.compare_digest(actual, self.expected):
            self._fail(DigestMismatch(self.number, self.expected, actual))

    def _fail(self, error: StorageError) -> None:
        self.failure = error
        raise error

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False
