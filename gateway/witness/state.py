"""The witness's state: the latest cosigned checkpoint of each log, one file per log.

Design note (c2sp.org/tlog-witness "add-checkpoint": the witness "MUST persist the new
checkpoint before responding", and checking the old size and persisting the new checkpoint
"must be performed atomically"):

- ``<state>/checkpoints/<origin hash>`` holds the log's latest cosigned checkpoint as served
  (the checkpoint text, the log signatures the witness verified, its own cosignatures);
  ``<origin hash>`` is the lowercase hex SHA-256 of the origin, as in the monitoring URL.
- :meth:`StateDir.locked` serialises everything done to one log: a per-origin thread lock
  and an exclusive ``flock`` on ``<state>/locks/<origin hash>.lock``, so threads, gunicorn
  workers and even two witness processes on one directory take turns.
- :meth:`LogState.replace` is a compare-and-set: under the lock it re-reads the file and
  refuses to write unless it still holds exactly the bytes the caller decided on. The new file
  is written to a temporary name, fsynced, renamed over the old one, and the directory is
  fsynced, so after a crash the file is either the old checkpoint or the new one. Only the
  holder of a log's lock writes that log's temporary files, so the next holder removes any it
  finds (a crash's leftovers); nothing else is ever removed, least of all another process's
  file in flight.
- A stored checkpoint is at most ``max_bytes`` (:data:`MAX_STATE_BYTES` unless given): a
  larger one is never written, and one found larger is refused when read.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_STATE_BYTES = 1 << 20


class StateError(RuntimeError):
    """The state directory cannot be read or written, or changed under the lock."""


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


class LogState:
    """One log's stored checkpoint, valid only inside :meth:`StateDir.locked`."""

    def __init__(self, path: Path, max_bytes: int = MAX_STATE_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def read(self) -> bytes | None:
        """The stored checkpoint, or None if the witness never cosigned for this log."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            return None
        if len(data) > self.max_bytes:
            raise StateError(f"{self.path} is larger than {self.max_bytes} bytes")
        return data

    def replace(self, expected: bytes | None, new: bytes) -> None:
        """Store ``new`` if the file still holds ``expected`` (None: no file); durable on return."""
        if len(new) > self.max_bytes:
            raise StateError(f"a checkpoint of {len(new)} bytes is over {self.max_bytes}")
        if self.read() != expected:
            raise StateError(f"{self.path} changed while it was locked")
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                view = memoryview(new)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class StateDir:
    """The witness's state directory; each stored checkpoint at most ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int = MAX_STATE_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.checkpoints = root / "checkpoints"
        self.locks = root / "locks"
        for d in (self.checkpoints, self.locks):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._guard = threading.Lock()
        self._threads: dict[str, threading.Lock] = {}

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._threads.setdefault(key, threading.Lock())

    @contextmanager
    def locked(self, origin: str) -> Iterator[LogState]:
        """Hold the log's lock (threads and processes) and yield its state."""
        key = origin_hash(origin)
        with self._thread_lock(key):
            fd = os.open(self.locks / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # Only a holder of this lock writes these: any found now is a crash's leftover.
                for stale in self.checkpoints.glob(f".{key}.*.tmp"):
                    stale.unlink(missing_ok=True)
                yield LogState(self.checkpoints / key, self.max_bytes)
            finally:
                os.close(fd)  # closing releases the flock

    def read(self, key: str) -> bytes | None:
        """The stored checkpoint under an origin hash, without the lock (a consistent file)."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            return None
        return LogState(self.checkpoints / key, self.max_bytes).read()
