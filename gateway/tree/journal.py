"""The record of an extraction in progress, so an interrupted one resumes after its last file.

Design note. An extraction into ``DIR`` keeps ``DIR/.gateway-incoming/`` (mode 0700):
``current``, the file being written (never a finished name), and ``journal``, one JSON
line per member finished: a directory made, or a file whose commitment matched its
manifest entry and that was moved into place. Each line holds the member's header
blocks (for the archive transcript), its commitment, the offset in the archive just
after it, and, for a file, what the file at its name was (inode, size, modification
time) so a resume notices a file changed since. The first line binds the journal to
one manifest (a fingerprint of its ``files`` list). Lines are written and fsynced one
at a time; a torn last line (a crash while writing it) is ignored. The directory is
removed when the extraction succeeds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.tree.commit import FileEntry
from gateway.tree.errors import ResumeError
from gateway.tree.names import RESERVED

JOURNAL = "journal"
CURRENT = "current"
VERSION = 1


@dataclass(frozen=True)
class Done:
    """One member the journal records as finished."""

    path: str
    kind: str
    header: bytes
    commitment: bytes | None
    end: int  #: the offset in the archive just after the member
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0

    def line(self) -> bytes:
        record = {
            "path": self.path,
            "kind": self.kind,
            "header": base64.b64encode(self.header).decode(),
            "commitment": None if self.commitment is None else self.commitment.hex(),
            "end": self.end,
            "inode": self.inode,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }
        return json.dumps(record, sort_keys=True).encode() + b"\n"

    @classmethod
    def parse(cls, record: dict[str, object]) -> Done:
        commitment = record["commitment"]
        return cls(
            path=str(record["path"]),
            kind=str(record["kind"]),
            header=base64.b64decode(str(record["header"])),
            commitment=None if commitment is None else bytes.fromhex(str(commitment)),
            end=int(str(record["end"])),
            inode=int(str(record["inode"])),
            size=int(str(record["size"])),
            mtime_ns=int(str(record["mtime_ns"])),
        )


def fingerprint(files: Iterable[FileEntry]) -> str:
    """SHA-256 (hex) of a manifest's files list, in order: which archive a journal is for."""
    h = hashlib.sha256()
    for f in files:
        h.update(json.dumps([f.path, f.size, f.commitment.hex()]).encode() + b"\n")
    return h.hexdigest()


class Journal:
    """The append-only journal in the staging directory ``staging_fd``."""

    def __init__(self, staging_fd: int, fd: int) -> None:
        self._staging_fd, self._fd = staging_fd, fd

    @classmethod
    def create(cls, staging_fd: int, manifest: str) -> Journal:
        fd = os.open(
            JOURNAL,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=staging_fd,
        )
        journal = cls(staging_fd, fd)
        journal._append(json.dumps({"version": VERSION, "manifest": manifest}).encode() + b"\n")
        return journal

    @classmethod
    def reopen(cls, staging_fd: int, manifest: str) -> tuple[Journal, list[Done]]:
        """The journal and what it records; ResumeError when it is for another manifest."""
        try:
            fd = os.open(JOURNAL, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=staging_fd)
        except FileNotFoundError:
            raise ResumeError(f"{RESERVED} has no journal: nothing to resume") from None
        with os.fdopen(os.dup(fd), "rb") as fh:
            lines = fh.read().split(b"\n")
        try:
            head = json.loads(lines[0])
        except ValueError:
            os.close(fd)
            raise ResumeError(f"{RESERVED}/{JOURNAL} is not a journal") from None
        if head != {"version": VERSION, "manifest": manifest}:
            os.close(fd)
            raise ResumeError(f"the interrupted extraction in {RESERVED} is of another artifact")
        done: list[Done] = []
        whole = len(lines[0]) + 1
        for line in lines[1:-1]:  # the last piece is empty, or a torn line
            try:
                done.append(Done.parse(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                break
            whole += len(line) + 1
        os.ftruncate(fd, whole)
        os.lseek(fd, whole, os.SEEK_SET)
        return cls(staging_fd, fd), done

    def record(self, done: Done) -> None:
        self._append(done.line())

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def restart_offset(dest: str | os.PathLike[str]) -> int:
    """Where the archive must restart for an interrupted extraction into ``dest``; 0 if none."""
    try:
        with open(os.path.join(dest, RESERVED, JOURNAL), "rb") as fh:
            lines = fh.read().split(b"\n")[1:-1]
    except FileNotFoundError:
        return 0
    end = 0
    for line in lines:
        try:
            end = int(json.loads(line)["end"])
        except (ValueError, KeyError, TypeError):
            break
    return end
