"""Custody of the per-upload age identities: one interface, three backends chosen in config.

- ``local``: a key file per artifact under ``keys/custody/`` on this machine; for one
  machine and development (:mod:`gateway.custody.local`).
- ``aws-kms``: AWS KMS, a KMS key per artifact by default or one shared key, with the
  upload, artifact and organisation as the encryption context (:mod:`gateway.custody.kms`).
- ``pkcs11``: an AES key per artifact generated inside a PKCS#11 token (an HSM), never
  extractable, destroyed in the token at shred (:mod:`gateway.custody.pkcs11`).

Nothing here knows Flask or the database: a backend wraps and unwraps bytes. How the
services use it::

    custody = make_custody(settings, keys_dir=Path(config.keys.dir))  # once, at start-up
    ctx = CustodyContext(upload_id, artifact_id, org)      # the artifact id is reserved at create

    # upload create, in the transaction that adds the upload row:
    ref = custody.create(ctx)
    blob = custody.wrap(ctx, ref, str(identity).encode())  # store ref (<= 255 chars) and blob

    # completion check and key release, after the flow's audit entry is recorded in the
    # same transaction (so every unwrap has its entry), never anywhere else:
    identity = age.parse_identity(custody.unwrap(ctx, ref, blob).decode())

    # shred (withdrawal, expiry, abort), after the rows are deleted and flushed, before
    # the commit: a failure rolls the shred back; destroy is idempotent, so retry freely.
    # (An artifact is committed as "shredding" first, so a commit that fails after the
    # destroy leaves it refused everywhere until the retry or the sweeper finishes it.)
    # ReferenceMismatch here means the key was destroyed but the stored ref was rewritten.
    custody.destroy(ctx, ref)

    custody.check()   # readiness (/readyz): raises CustodyUnavailable when not usable

Values wrapped before this package (the old ``keys/master.key``) unwrap with the ``local``
backend under :data:`LEGACY_REF`.

Every operation finds the artifact's key from ``ctx`` (a file, label or alias named from
the upload id) and only compares ``ref`` with it, so a reference rewritten in the database
is an alarm, never a way around the key: ``destroy`` destroys ctx's key whatever ``ref``
says, and returns False only when the backend holds no live key for ctx.

Errors (no HTTP status; the services map them): :class:`CustodyUnavailable` -> 503,
:class:`KeyDestroyed` -> 410, :class:`UnwrapFailed` / :class:`ContextMismatch` /
:class:`ReferenceMismatch` -> 500 and an integrity alarm in the log (the database or a key
was tampered with). ``ValueError`` for a malformed context or secret, or a second
``create`` for one upload (a caller's bug).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.custody.base import (
    LEGACY_REF,
    MAX_REF_CHARS,
    MAX_SECRET_BYTES,
    ContextMismatch,
    Custody,
    CustodyContext,
    CustodyError,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    ReferenceMismatch,
    UnwrapFailed,
)
from gateway.custody.settings import BACKENDS, CustodySettingError, CustodySettings

MASTER_KEY_FILE = "master.key"


def make_custody(
    settings: CustodySettings,
    *,
    keys_dir: Path,
    session: Any = None,
    environ: Mapping[str, str] | None = None,
) -> Custody:
    """The backend named by ``settings.backend``.

    ``keys_dir`` is ``[keys] dir`` (the ``local`` key files and the old master key live
    there); ``session`` a boto3 session to share (``aws-kms``); ``environ`` where the
    PKCS#11 PIN variable is read (default ``os.environ``). Connects to nothing yet.
    """
    settings.validate()
    if settings.backend == "local":
        from gateway.custody.local import LocalCustody

        return LocalCustody(settings.key_dir(keys_dir), keys_dir / MASTER_KEY_FILE)
    if settings.backend == "aws-kms":
        from gateway.custody.kms import KmsCustody

        return KmsCustody(settings, session=session)
    from gateway.custody.pkcs11 import Pkcs11Custody

    return Pkcs11Custody(settings, environ=environ)


__all__ = [
    "BACKENDS",
    "LEGACY_REF",
    "MAX_REF_CHARS",
    "MAX_SECRET_BYTES",
    "ContextMismatch",
    "Custody",
    "CustodyContext",
    "CustodyError",
    "CustodySettingError",
    "CustodySettings",
    "CustodyUnavailable",
    "KeyDestroyed",
    "KeyRef",
    "ReferenceMismatch",
    "UnwrapFailed",
    "make_custody",
]
