"""The ``local`` backend: objects in a directory, for a gateway on one machine.

Layout under ``root``::

    objects/<key>                     completed objects
    staging/<handle>/key              the key the upload was begun for
    staging/<handle>/data             the object being assembled (sparse; parts at their offsets)
    staging/<handle>/part-00001.json  a stored part: offset, size, sha256 (written once verified)
    staging/<handle>/part-00001.lock  serialises writers of one part (flock)

A part number not yet stored is written in place with ``os.pwrite`` while it is hashed;
if it fails its digest or ends early, the bytes written are punched out again and no
marker is written. A part that replaces a stored one is first streamed to a temporary
file and verified, and only then copied over the good bytes, so a refused resend never
harms the part already there. Every write is fsynced before its marker appears.
Completion truncates ``data`` to the total size, renames it into ``objects/`` and fsyncs
the directory. Several processes of one gateway may share a root; several machines may not.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

from gateway.storage.base import (
    CHUNK,
    HashingReader,
    InvalidPart,
    NotFound,
    StorageError,
    StoredPart,
    UploadNotFound,
    check_key,
    check_part,
)

_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
DIR_MODE = 0o700


def private_dirs(folder: Path) -> None:
    """Create ``folder`` and each missing parent mode 0700 (``mkdir(parents=True)`` gives
    the parents the umask's mode, readable by every local user)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(mode=DIR_MODE, exist_ok=True)


class LocalStore:
    """Objects under ``root/objects``, uploads in progress under ``root/staging``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.staging = self.root / "staging"

    # --- uploads ----------------------------------------------------------------------

    def begin_upload(self, key: str) -> str:
        check_key(key)
        handle = secrets.token_hex(16)
        folder = self.staging / handle
        try:
            private_dirs(self.staging)
            folder.mkdir(mode=DIR_MODE)
            with open(folder / "key", "x") as fh:
                fh.write(key)
                fh.flush()
                os.fsync(fh.fileno())
            (folder / "data").touch(mode=0o600)
            _fsync_dir(folder)
            _fsync_dir(self.staging)
        except OSError as exc:
            raise StorageError(
                f"cannot begin an upload under {self.staging}: {exc.strerror}"
            ) from None
        return handle

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
        digest = check_part(number, offset, length, sha256_hex)
        folder = self._folder(key, handle)
        _check_neighbours(folder, number, offset, length)
        reader = HashingReader(stream, number, length, digest)
        with open(folder / f"part-{number:05d}.lock", "ab") as lock:
            fresh = _try_lock(lock) and not (folder / _marker(number)).exists()
            if fresh:
                self._write_in_place(folder, offset, reader)
            else:
                self._replace(folder, number, offset, reader, lock)
            _write_marker(folder, number, offset, length, digest)
        return StoredPart(number=number, size=length, sha256=digest, etag=digest)

    def stored_parts(self, key: str, handle: str) -> list[StoredPart]:
        folder = self._folder(key, handle)
        return [StoredPart(m.number, m.size, m.sha256, m.sha256) for m in _markers(folder).values()]

    def complete_upload(
        self, key: str, handle: str, parts: list[StoredPart], total_size: int
    ) -> None:
        folder = self._folder(key, handle)
        held = _markers(folder)
        expected_offset = 0
        for part in sorted(parts, key=lambda p: p.number):
            mark = held.get(part.number)
            if mark is None or mark.size != part.size or mark.sha256 != part.sha256.lower():
                raise InvalidPart(
                    f"part {part.number} is not stored with size {part.size} and SHA-256 {part.sha256}"
                )
            if mark.offset != expected_offset:
                raise InvalidPart(
                    f"part {part.number} starts at byte {mark.offset}, expected {expected_offset}"
                )
            expected_offset += part.size
        if expected_offset != total_size:
            raise InvalidPart(f"the parts hold {expected_offset} bytes, expected {total_size}")
        dest = self._path(key)
        if not (folder / "data").exists() and dest.is_file() and dest.stat().st_size == total_size:
            shutil.rmtree(folder, ignore_errors=True)  # moved before a crash: finish the clean-up
            return
        try:
            with open(folder / "data", "r+b") as fh:
                os.truncate(fh.fileno(), total_size)
                os.fsync(fh.fileno())
            private_dirs(dest.parent)
            os.replace(folder / "data", dest)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise StorageError(f"cannot complete the upload of {key}: {exc.strerror}") from None
        shutil.rmtree(folder, ignore_errors=True)
        _fsync_dir(self.staging)

    def abort_upload(self, key: str, handle: str) -> None:
        try:
            folder = self._folder(key, handle)
        except UploadNotFound:
            return
        shutil.rmtree(folder, ignore_errors=True)
        _fsync_dir(self.staging)

    def cleanup_stale_uploads(self, older_than: datetime) -> int:
        cutoff = (older_than if older_than.tzinfo else older_than.replace(tzinfo=UTC)).timestamp()
        if not self.staging.is_dir():
            return 0
        removed = 0
        for folder in self.staging.iterdir():
            try:
                touched = max(
                    [folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.iterdir()]
                )
            except OSError:
                continue
            if touched < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        if removed:
            _fsync_dir(self.staging)
        return removed

    # --- objects ----------------------------------------------------------------------

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None
        total = os.fstat(fh.fileno()).st_size
        stop = total if end is None else min(end, total)
        return _chunks(fh, max(start, 0), stop)

    def read_prefix(self, key: str, n: int) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read(n)
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no object {key}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def presign_get(self, key: str, expires_in_seconds: int) -> str | None:
        check_key(key)
        return None

    def check_writable(self) -> None:
        probe = self.staging / f".probe-{secrets.token_hex(8)}"
        try:
            private_dirs(self.staging)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"object store {self.root} is not writable: {exc.strerror}"
            ) from None

    # --- internals --------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.objects / check_key(key)

    def _folder(self, key: str, handle: str) -> Path:
        check_key(key)
        folder = self.staging / handle
        try:
            ok = (
                len(handle) == 32
                and all(c in "0123456789abcdef" for c in handle)
                and ((folder / "key").read_text() == key)
            )
        except OSError:
            ok = False
        if not ok:
            raise UploadNotFound(f"no upload {handle!r} in progress for {key}")
        return folder

    def _write_in_place(self, folder: Path, offset: int, reader: HashingReader) -> None:
        fd = os.open(folder / "data", os.O_WRONLY)
        written = 0
        try:
            for chunk in iter(lambda: reader.read(CHUNK), b""):
                _pwrite_all(fd, chunk, offset + written)
                written += len(chunk)
            os.fsync(fd)
        except OSError as exc:
            _discard_range(fd, offset, written)
            raise StorageError(f"part {reader.number}: cannot write: {exc.strerror}") from None
        except BaseException:
            _discard_range(fd, offset, written)
            raise
        finally:
            os.close(fd)

    def _replace(
        self, folder: Path, number: int, offset: int, reader: HashingReader, lock: BinaryIO
    ) -> None:
        temp = folder / f"replace-{number:05d}-{secrets.token_hex(6)}"
        try:
            with open(temp, "xb") as out:
                for chunk in iter(lambda: reader.read(CHUNK), b""):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                (folder / _marker(number)).unlink()
            _fsync_dir(folder)
            fd = os.open(folder / "data", os.O_WRONLY)
            try:
                with open(temp, "rb") as src:
                    for position, chunk in enumerate(iter(lambda: src.read(CHUNK), b"")):
                        _pwrite_all(fd, chunk, offset + position * CHUNK)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"part {number}: cannot write: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _chunks(fh: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
    with fh:
        fh.seek(start)
        left = stop - start
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def _marker(number: int) -> str:
    return f"part-{number:05d}.json"


class _Mark(NamedTuple):
    """A stored part, as its marker file records it."""

    number: int
    offset: int
    size: int
    sha256: str


def _markers(folder: Path) -> dict[int, _Mark]:
    found: dict[int, _Mark] = {}
    for path in sorted(folder.glob("part-*.json")):
        mark = _read_marker(folder, int(path.name[5:10]))
        if mark is not None:
            found[mark.number] = mark
    return found


def _read_marker(folder: Path, number: int) -> _Mark | None:
    try:
        raw = json.loads((folder / _marker(number)).read_text())
    except FileNotFoundError:
        return None
    return _Mark(int(raw["number"]), int(raw["offset"]), int(raw["size"]), str(raw["sha256"]))


def _check_neighbours(folder: Path, number: int, offset: int, length: int) -> None:
    """Refuse a part that would overlap the stored part before or after it."""
    before, after = _read_marker(folder, number - 1), _read_marker(folder, number + 1)
    if before is not None and before.offset + before.size > offset:
        raise InvalidPart(f"part {number} at byte {offset} would overlap part {number - 1}")
    if after is not None and offset + length > after.offset:
        raise InvalidPart(
            f"part {number} ending at byte {offset + length} would overlap part {number + 1}"
        )


def _write_marker(folder: Path, number: int, offset: int, size: int, sha256: str) -> None:
    temp = folder / f"{_marker(number)}.tmp-{secrets.token_hex(4)}"
    with open(temp, "x") as fh:
        json.dump({"number": number, "offset": offset, "size": size, "sha256": sha256}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, folder / _marker(number))
    _fsync_dir(folder)


def _try_lock(lock: BinaryIO) -> bool:
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _discard_range(fd: int, offset: int, length: int) -> None:
    """Remove a refused part's bytes: punch a hole, or overwrite with zeros where that fails."""
    if length <= 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = getattr(libc, "fallocate", None)
    if fallocate is not None:
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        if fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
            return
    zeros = bytes(min(CHUNK, length))
    done = 0
    while done < length:
        _pwrite_all(fd, zeros[: min(CHUNK, length - done)], offset + done)
        done += min(CHUNK, length - done)
    os.fsync(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
