"""The custody interface: what every backend implements, its errors, and the wrapped-value framing.

A custody backend keeps an upload's custody identity (the age identity string, 74 bytes
for X25519, 77 for the ML-KEM hybrid) only wrapped under a key it controls. The
lifecycle of one artifact's key:

    ref  = custody.create(ctx)              # a fresh key-encryption key for this artifact
    blob = custody.wrap(ctx, ref, secret)   # store ``ref`` and ``blob`` beside the upload
    secret = custody.unwrap(ctx, ref, blob) # only where a flow needs it, in its transaction
    custody.destroy(ctx, ref)               # at shred; idempotent; then unwrap -> KeyDestroyed

Every wrapped value starts with a clear header naming its format and the
:class:`CustodyContext` it was wrapped for, and the whole header is bound to the
ciphertext (AES-GCM associated data; the KMS encryption context), so a value moved to
another upload, artifact or organisation does not unwrap. The clear copy only makes the
refusal say which field differs (:class:`ContextMismatch`); rewriting it does not help,
because the binding itself is cryptographic.

Layout of a wrapped value::

    format (1 byte) || context length (2 bytes, big-endian) || context (canonical JSON) || body

Each artifact's key is found from its context, never from the stored reference: a
backend derives where the key lives (a file name, a PKCS#11 label, a KMS alias) from the
upload id, and checks what it finds against the whole context. The reference is only
compared with the reference of the key found (:func:`check_reference`); one that differs is
:class:`ReferenceMismatch`, an integrity alarm. So a reference rewritten in the database can
neither make :meth:`Custody.destroy` skip the artifact's key (destroy destroys the key of the
context it is given, whatever the reference says) nor make an operation use another key.

The errors are a closed set and carry no HTTP status: the services map them
(:class:`CustodyUnavailable` -> 503, :class:`KeyDestroyed` -> 410, :class:`UnwrapFailed`
and its subclasses :class:`ContextMismatch` and :class:`ReferenceMismatch` -> 500 with an
integrity alarm in the log: no client can cause them). Their messages name ids and backend
objects, never key material or PINs; the services choose what a client is told.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from dataclasses import dataclass
from typing import NewType, Protocol, runtime_checkable

log = logging.getLogger("gateway.custody")

KeyRef = NewType("KeyRef", str)
"""A backend's name for one artifact's key-encryption key; at most :data:`MAX_REF_CHARS`."""

LEGACY_REF = KeyRef("local:master-key")
"""The reference of every value wrapped by the old ``keys/master.key`` (``local`` backend)."""

MAX_REF_CHARS = 255
MAX_SECRET_BYTES = 1024
"""The largest secret a backend wraps (identity strings are under 100 bytes; KMS takes 4096)."""
MAX_BLOB_BYTES = 8192
"""A longer value is refused before any key is touched."""

FORMAT_LOCAL_LEGACY = 0x01  # the old master key: 0x01 || nonce || AES-GCM, AAD = upload id
FORMAT_LOCAL = 0x02
FORMAT_KMS = 0x03
FORMAT_PKCS11 = 0x04
FORMAT_NAMES = {
    FORMAT_LOCAL_LEGACY: "local (master key)",
    FORMAT_LOCAL: "local",
    FORMAT_KMS: "aws-kms",
    FORMAT_PKCS11: "pkcs11",
}

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# --- errors -----------------------------------------------------------------------------


class CustodyError(Exception):
    """Base of every error a custody backend raises."""


class CustodyUnavailable(CustodyError):
    """The backend cannot be reached or used now (network, credentials, token, key file)."""


class KeyDestroyed(CustodyError):
    """The artifact's key-encryption key has been destroyed (or disabled): nothing unwraps."""


class UnwrapFailed(CustodyError):
    """The wrapped value does not open: tampered, truncated, foreign, or under another key."""


class ContextMismatch(UnwrapFailed):
    """The value, or the key found for the upload, belongs to another upload, artifact or org."""


class ReferenceMismatch(ContextMismatch):
    """The stored key reference is not the reference of the key held for the context.

    Only a rewritten database row causes it. :meth:`Custody.destroy` raises it after
    destroying the context's key (the message says so), so the shred has happened.
    """


# --- the context ------------------------------------------------------------------------


@dataclass(frozen=True)
class CustodyContext:
    """Which upload, artifact and organisation a wrapped value belongs to.

    Each field is an id of at most 64 characters of ``A-Z a-z 0-9 . _ -`` (upload and
    artifact ids, organisation names), so the canonical form is unambiguous and every
    field is a valid KMS tag value, PKCS#11 label and file name.
    """

    upload_id: str
    artifact_id: str
    org: str

    def __post_init__(self) -> None:
        for name in ("upload_id", "artifact_id", "org"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _ID.fullmatch(value):
                raise ValueError(
                    f"custody context {name} must be 1-64 characters of A-Z a-z 0-9 . _ -, got {value!r}"
                )

    def fields(self) -> dict[str, str]:
        """The context as the KMS encryption context and the framing's JSON (keys sorted)."""
        return {"artifact": self.artifact_id, "org": self.org, "upload": self.upload_id}

    def canonical(self) -> bytes:
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":")).encode("ascii")

    def digest(self) -> bytes:
        """16 bytes naming this context's key (``local`` and ``pkcs11`` references)."""
        return hashlib.sha256(self.canonical()).digest()[:16]


# --- the interface ----------------------------------------------------------------------


@runtime_checkable
class Custody(Protocol):
    """A custody backend. Thread-safe; every method may raise :class:`CustodyUnavailable`."""

    name: str
    """``"local"``, ``"aws-kms"`` or ``"pkcs11"``."""

    destroys_keys: bool
    """True when :meth:`destroy` makes every copy of a wrapped value useless (old
    database backups included); False for the shared-KMS-key mode, where only deleting
    the value itself shreds."""

    def create(self, ctx: CustodyContext) -> KeyRef:
        """Make a fresh key-encryption key for this artifact; returns its reference.

        ``ValueError`` if the backend already holds a key for this upload (a caller's bug:
        each upload has one key, made once).
        """
        ...

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        """Wrap ``secret`` (1..:data:`MAX_SECRET_BYTES`) under ctx's key, bound to ``ctx``.

        :class:`ReferenceMismatch` unless ``ref`` is that key's reference.
        """
        ...

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        """The secret, or :class:`KeyDestroyed`, :class:`ContextMismatch`, :class:`UnwrapFailed`.

        The key is ctx's; :class:`ReferenceMismatch` unless ``ref`` is its reference.
        """
        ...

    def destroy(self, ctx: CustodyContext, ref: KeyRef) -> bool:
        """Destroy ctx's key for good; True if this call destroyed it, False if none is left.

        The key is found from ``ctx`` alone, whatever ``ref`` says; False only when the
        backend shows it holds no live key for this context (never made, or destroyed
        already), so a retry is safe. Refuses (:class:`ContextMismatch`, nothing destroyed)
        a key found for this upload that was made for another artifact or organisation.
        When ``ref`` is not the reference of the key it destroyed, raises
        :class:`ReferenceMismatch` afterwards: the key is gone, and the database was rewritten.
        Cannot be rolled back: call it inside the shredding transaction, after the
        database changes are flushed and before the commit, so a failure here leaves
        the database unshredded and the call is retried.
        """
        ...

    def check(self) -> None:
        """Readiness: raises :class:`CustodyUnavailable` unless the backend can be used now."""
        ...

    def close(self) -> None:
        """Release connections and sessions; the backend may not be used afterwards."""
        ...


# --- shared helpers ---------------------------------------------------------------------


def check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise ValueError(f"a custody secret must be 1 to {MAX_SECRET_BYTES} bytes")


def check_reference(
    ctx: CustodyContext, ref: str, expected: str, *, destroyed: bool = False
) -> None:
    """:class:`ReferenceMismatch` unless ``ref`` is ``expected``, the reference of ctx's key.

    ``destroyed``: the key was destroyed before the mismatch was found; the message says so.
    """
    if isinstance(ref, str) and ref == expected:
        return
    done = "; the key was destroyed all the same" if destroyed else ""
    raise ReferenceMismatch(
        f"key reference {str(ref)[:120]!r} is not {expected!r}, the key held for upload "
        f"{ctx.upload_id}: the stored reference was rewritten{done}"
    )


def frame_header(fmt: int, ctx: CustodyContext) -> bytes:
    """The clear header of a wrapped value; also its associated data."""
    context = ctx.canonical()
    return bytes([fmt]) + struct.pack(">H", len(context)) + context


def split_blob(blob: bytes, fmt: int, ctx: CustodyContext) -> tuple[bytes, bytes]:
    """``(associated data, body)`` of a value of format ``fmt``, to unwrap for ``ctx``.

    The associated data is computed from ``ctx``, never taken from the value: the clear
    copy only lets a refusal name the field that differs (:class:`ContextMismatch`).
    Raises :class:`UnwrapFailed` for a malformed or foreign value.
    """
    if not isinstance(blob, bytes | bytearray) or len(blob) > MAX_BLOB_BYTES:
        raise UnwrapFailed(f"a wrapped value must be bytes of at most {MAX_BLOB_BYTES}")
    blob = bytes(blob)
    if len(blob) < 3:
        raise UnwrapFailed("the wrapped value is truncated")
    if blob[0] != fmt:
        other = FORMAT_NAMES.get(blob[0], f"unknown format 0x{blob[0]:02x}")
        raise UnwrapFailed(f"the value was wrapped by the {other} backend, not this one")
    (length,) = struct.unpack(">H", blob[1:3])
    header, body = blob[: 3 + length], blob[3 + length :]
    if len(header) != 3 + length or not body:
        raise UnwrapFailed("the wrapped value is truncated")
    try:
        recorded = json.loads(header[3:].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise UnwrapFailed("the wrapped value's context is malformed") from None
    if not isinstance(recorded, dict):
        raise UnwrapFailed("the wrapped value's context is malformed")
    for key, value in ctx.fields().items():
        if recorded.get(key) != value:
            raise ContextMismatch(
                f"the value was wrapped for {key} {str(recorded.get(key))[:64]!r}, not {value!r}"
            )
    return frame_header(fmt, ctx), body


def log_operation(action: str, backend: str, ctx: CustodyContext, ref: str) -> None:
    """One log line per custody operation: ids and the key's reference, never key material."""
    log.info(
        "custody %s: backend=%s upload=%s artifact=%s org=%s key=%s",
        action,
        backend,
        ctx.upload_id,
        ctx.artifact_id,
        ctx.org,
        ref,
    )
