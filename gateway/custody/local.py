"""The ``local`` custody backend: one key file per artifact, on this machine. For development.

Each artifact gets its own AES-256 key in ``<key_dir>/<upload id>.key`` (mode 0600, in a
0700 directory), followed by the canonical context it belongs to; the file is named from the
context, so every operation finds the key from the context it is given, and the reference
(``local:`` and 32 hex characters of :meth:`CustodyContext.digest`) is only checked against
it. Values are AES-256-GCM under that key, the framing header as associated data.

:meth:`LocalCustody.destroy` first renames the file to ``<upload id>.destroyed`` (one atomic
step after which nothing opens the key: a tombstone there means destroyed), then overwrites
it, syncs it and unlinks it. A crash at any point leaves either the live key or a tombstone,
and the next destroy for the context finishes the job. A database copy made at any time no
longer opens once the file is gone, unless someone also kept a copy of ``key_dir`` from
before. The key files sit on the same disk as the database: whoever copies that disk while
an artifact is live can open it, and an overwritten file may survive on an SSD or a
copy-on-write filesystem. Use ``aws-kms`` or ``pkcs11`` beyond one machine.

Values wrapped before per-artifact keys (the old ``keys/master.key``: ``0x01 || nonce ||
AES-GCM``, the upload id as associated data) still unwrap under :data:`LEGACY_REF` with
``keys/master.key``, unless the upload has a key file (then the reference was rewritten);
nothing new is wrapped that way, and destroying such a value's "key" destroys nothing
(deleting the value is the whole shred).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.custody.base import (
    FORMAT_LOCAL,
    FORMAT_LOCAL_LEGACY,
    LEGACY_REF,
    ContextMismatch,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    ReferenceMismatch,
    UnwrapFailed,
    check_reference,
    check_secret,
    frame_header,
    log_operation,
    split_blob,
)

PREFIX = "local:"
KEY_SIZE = 32
NONCE_SIZE = 12
KEY_SUFFIX = ".key"
TOMBSTONE_SUFFIX = ".destroyed"


class LocalCustody:
    """Per-artifact key files under ``key_dir``; ``master_key_file`` only for old values."""

    name = "local"
    destroys_keys = True

    def __init__(self, key_dir: Path, master_key_file: Path) -> None:
        self.key_dir = Path(key_dir)
        self.master_key_file = Path(master_key_file)

    def __repr__(self) -> str:
        return f"LocalCustody(key_dir={str(self.key_dir)!r})"

    # --- the interface ------------------------------------------------------------------

    def create(self, ctx: CustodyContext) -> KeyRef:
        self._ensure_dir()
        path = self._key_path(ctx)
        if self._tombstone(ctx).exists():
            raise ValueError(f"upload {ctx.upload_id} already had a custody key, destroyed")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, secrets.token_bytes(KEY_SIZE) + ctx.canonical())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._sync_dir()
        except FileExistsError:
            raise ValueError(f"upload {ctx.upload_id} already has a custody key") from None
        except OSError as exc:
            raise CustodyUnavailable(
                f"cannot write a key file in {self.key_dir}: {exc.strerror}"
            ) from None
        ref = reference(ctx)
        log_operation("create", self.name, ctx, ref)
        return ref

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        check_secret(secret)
        if ref == LEGACY_REF:
            raise ValueError("nothing new is wrapped under the master key; create() a key first")
        check_reference(ctx, ref, reference(ctx))
        key = self._key(ctx)
        header = frame_header(FORMAT_LOCAL, ctx)
        nonce = secrets.token_bytes(NONCE_SIZE)
        return header + nonce + AESGCM(key).encrypt(nonce, bytes(secret), header)

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        if ref == LEGACY_REF:
            if self._key_path(ctx).exists() or self._tombstone(ctx).exists():
                raise ReferenceMismatch(
                    f"upload {ctx.upload_id} has a key file, not a value under the master key: "
                    "the stored reference was rewritten"
                )
            secret = self._unwrap_legacy(ctx, blob)
        else:
            aad, body = split_blob(blob, FORMAT_LOCAL, ctx)  # first: it names a moved field
            check_reference(ctx, ref, reference(ctx))
            key = self._key(ctx)
            if len(body) < NONCE_SIZE + 16:
                raise UnwrapFailed("the wrapped value is truncated")
            try:
                secret = AESGCM(key).decrypt(body[:NONCE_SIZE], body[NONCE_SIZE:], aad)
            except InvalidTag:
                raise UnwrapFailed(f"the value does not open under key {ref}") from None
        log_operation("unwrap", self.name, ctx, ref)
        return secret

    def destroy(self, ctx: CustodyContext, ref: KeyRef) -> bool:
        self._ensure_dir()
        finished = self._finish(ctx)  # a destroy that crashed half-way
        path = self._key_path(ctx)
        try:
            _, owner = self._read_key(path)
        except KeyDestroyed:
            if finished:
                log_operation("destroy", self.name, ctx, str(ref))
            return finished
        if owner != ctx.canonical():
            raise ContextMismatch(
                f"key file {path.name} belongs to {owner[:200]!r}, not {ctx.canonical()!r}; "
                "not destroyed"
            )
        try:
            os.rename(path, self._tombstone(ctx))  # from here on, the key is destroyed
            self._sync_dir()
        except OSError as exc:
            raise CustodyUnavailable(f"cannot remove key file {path}: {exc.strerror}") from None
        self._finish(ctx)
        log_operation("destroy", self.name, ctx, str(ref))
        check_reference(ctx, ref, reference(ctx), destroyed=True)
        return True

    def check(self) -> None:
        self._ensure_dir()
        if not os.access(self.key_dir, os.W_OK | os.X_OK):
            raise CustodyUnavailable(f"key directory {self.key_dir} is not writable")

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own file."""

    # --- helpers ------------------------------------------------------------------------

    def _key_path(self, ctx: CustodyContext) -> Path:
        return self.key_dir / (ctx.upload_id + KEY_SUFFIX)

    def _tombstone(self, ctx: CustodyContext) -> Path:
        return self.key_dir / (ctx.upload_id + TOMBSTONE_SUFFIX)

    def _key(self, ctx: CustodyContext) -> bytes:
        """ctx's key; :class:`KeyDestroyed` if it is gone, :class:`ContextMismatch` if not ctx's."""
        if self._tombstone(ctx).exists():
            raise KeyDestroyed(f"the key of upload {ctx.upload_id} is being destroyed")
        key, owner = self._read_key(self._key_path(ctx))
        if owner != ctx.canonical():
            raise ContextMismatch(
                f"the key file of upload {ctx.upload_id} belongs to {owner[:200]!r}"
            )
        return key

    def _finish(self, ctx: CustodyContext) -> bool:
        """Overwrite, sync and unlink ctx's tombstone; True if there was one."""
        tomb = self._tombstone(ctx)
        try:
            fd = os.open(tomb, os.O_WRONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CustodyUnavailable(f"cannot open {tomb}: {exc.strerror}") from None
        try:
            _overwrite(fd)  # unlinking alone leaves the blocks
            os.close(fd)
            tomb.unlink()
            self._sync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise CustodyUnavailable(f"cannot destroy {tomb}: {exc.strerror}") from None
        return True

    def _ensure_dir(self) -> None:
        try:
            self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            mode = self.key_dir.stat().st_mode
        except OSError as exc:
            raise CustodyUnavailable(f"key directory {self.key_dir}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CustodyUnavailable(
                f"key directory {self.key_dir} is open to others; chmod 700 {self.key_dir}"
            )

    def _sync_dir(self) -> None:
        fd = os.open(self.key_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_key(self, path: Path) -> tuple[bytes, bytes]:
        """``(key, owning context)`` from a key file; :class:`KeyDestroyed` if it is gone."""
        data = _read_private(path, missing=KeyDestroyed(f"key file {path.name} is gone"))
        if len(data) <= KEY_SIZE:
            raise CustodyUnavailable(f"key file {path} is malformed")
        return data[:KEY_SIZE], data[KEY_SIZE:]

    def _unwrap_legacy(self, ctx: CustodyContext, blob: bytes) -> bytes:
        if not isinstance(blob, bytes) or len(blob) < 1 + NONCE_SIZE + 16:
            raise UnwrapFailed("the wrapped value is truncated")
        if blob[0] != FORMAT_LOCAL_LEGACY:
            raise UnwrapFailed("a value under the master key must be in the master key's format")
        missing = CustodyUnavailable(f"master key {self.master_key_file} not found")
        key = _read_private(self.master_key_file, missing=missing)
        if len(key) != KEY_SIZE:
            raise CustodyUnavailable(f"master key {self.master_key_file} is not {KEY_SIZE} bytes")
        nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return AESGCM(key).decrypt(nonce, body, ctx.upload_id.encode())
        except InvalidTag:
            raise UnwrapFailed(
                f"the value does not open under the master key for upload {ctx.upload_id}"
            ) from None


def _read_private(path: Path, *, missing: Exception) -> bytes:
    """Read a key file that only its owner may read; ``missing`` is raised when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise missing from None
    except OSError as exc:
        raise CustodyUnavailable(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CustodyUnavailable(f"key file {path} is readable by others; chmod 600 {path}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(64 * 1024)
    finally:
        os.close(fd)


def reference(ctx: CustodyContext) -> KeyRef:
    """The reference of ctx's key file."""
    return KeyRef(PREFIX + ctx.digest().hex())


def _overwrite(fd: int) -> None:
    """Zero the whole file behind ``fd`` and sync it."""
    size = os.fstat(fd).st_size
    view = memoryview(bytes(size))
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
