"""The ``local`` custody backend: one key file per artifact, on this machine. For development.

Each artifact gets its own AES-256 key in ``<key_dir>/<32 hex>.key`` (mode 0600, in a
0700 directory), followed by the canonical context it belongs to. Values are AES-256-GCM
under that key, the framing header as associated data. :meth:`LocalCustody.destroy`
overwrites the file, syncs it and unlinks it, so a database copy made at any time no
longer opens once the file is gone, unless someone also kept a copy of ``key_dir`` from
before. The key files sit on the same disk as the database: whoever copies that disk
while an artifact is live can open it, and an overwritten file may survive on an SSD or
a copy-on-write filesystem. Use ``aws-kms`` or ``pkcs11`` beyond one machine.

Values wrapped before per-artifact keys (``keystore.MasterKey``: ``0x01 || nonce ||
AES-GCM``, the upload id as associated data) still unwrap under :data:`LEGACY_REF` with
``keys/master.key``; nothing new is wrapped that way, and destroying such a value's
"key" destroys nothing (deleting the value is the whole shred).
"""

from __future__ import annotations

import os
import re
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
    UnwrapFailed,
    check_ref,
    check_secret,
    frame_header,
    log_operation,
    split_blob,
)

PREFIX = "local:"
KEY_SIZE = 32
NONCE_SIZE = 12
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")


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
        key_id = secrets.token_hex(16)
        path = self.key_dir / f"{key_id}.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, secrets.token_bytes(KEY_SIZE) + ctx.canonical())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._sync_dir()
        except OSError as exc:
            raise CustodyUnavailable(
                f"cannot write a key file in {self.key_dir}: {exc.strerror}"
            ) from None
        ref = KeyRef(PREFIX + key_id)
        log_operation("create", self.name, ctx, ref)
        return ref

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        check_secret(secret)
        if ref == LEGACY_REF:
            raise ValueError("nothing new is wrapped under the master key; create() a key first")
        key, _ = self._read_key(self._path(ref))
        header = frame_header(FORMAT_LOCAL, ctx)
        nonce = secrets.token_bytes(NONCE_SIZE)
        return header + nonce + AESGCM(key).encrypt(nonce, bytes(secret), header)

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        if ref == LEGACY_REF:
            secret = self._unwrap_legacy(ctx, blob)
        else:
            path = self._path(ref)
            aad, body = split_blob(blob, FORMAT_LOCAL, ctx)
            key, _ = self._read_key(path)
            if len(body) < NONCE_SIZE + 16:
                raise UnwrapFailed("the wrapped value is truncated")
            try:
                secret = AESGCM(key).decrypt(body[:NONCE_SIZE], body[NONCE_SIZE:], aad)
            except InvalidTag:
                raise UnwrapFailed(f"the value does not open under key {ref}") from None
        log_operation("unwrap", self.name, ctx, ref)
        return secret

    def destroy(self, ctx: CustodyContext, ref: KeyRef) -> bool:
        if ref == LEGACY_REF:
            return False
        path = self._path(ref)
        try:
            _, owner = self._read_key(path)
        except KeyDestroyed:
            return False
        if owner != ctx.canonical():
            raise ContextMismatch(f"key {ref} belongs to another artifact; not destroyed")
        try:
            with open(path, "r+b") as fh:  # overwrite first: unlinking alone leaves the blocks
                fh.write(b"\0" * path.stat().st_size)
                fh.flush()
                os.fsync(fh.fileno())
            path.unlink()
            self._sync_dir()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CustodyUnavailable(f"cannot remove key file {path}: {exc.strerror}") from None
        log_operation("destroy", self.name, ctx, ref)
        return True

    def check(self) -> None:
        self._ensure_dir()
        if not os.access(self.key_dir, os.W_OK | os.X_OK):
            raise CustodyUnavailable(f"key directory {self.key_dir} is not writable")

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own file."""

    # --- helpers ------------------------------------------------------------------------

    def _path(self, ref: KeyRef) -> Path:
        key_id = check_ref(ref, PREFIX)
        if not _KEY_ID.fullmatch(key_id):
            raise UnwrapFailed(f"key reference {ref!r} is not a local key reference")
        return self.key_dir / f"{key_id}.key"

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
