"""Secret files: the one way the gateway and its client write and read keys, tokens and state.

Three operations, each with one rule:

- :func:`create_secret` makes a *new* file of mode 0600 and never replaces one: key files
  (the master key, the audit and URL signing keys, a lab's signing key, an evaluator's age
  identity), where overwriting would destroy a key;
- :func:`replace_secret` replaces a file atomically at mode 0600 (a temporary file in the
  same directory, then ``rename``): files that change, such as client profiles and push
  state, which a reader must see whole, old or new;
- :func:`read_secret` reads a file only if it is a regular file that neither its group nor
  others may read, write or execute, judged on the very file it reads (``fstat`` of the
  open descriptor, so nothing can swap the file between the check and the read).

Every written file is fsynced before these return. Refusals are exceptions of this module
(:class:`NotARegularFile`, :class:`ReadableByOthers`) or the ``OSError`` the system gave
(``FileNotFoundError``, ``FileExistsError``, ...); each caller words them for its users.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

#: Permission bits a secret file must not have: any access for its group or others.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class SecretFileRefused(Exception):
    """A secret file exists but must not be used; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class NotARegularFile(SecretFileRefused):
    """The path is a directory, a device, a FIFO or a socket, not a file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "not a regular file")


class ReadableByOthers(SecretFileRefused):
    """The file's mode lets its group or others at it; ``mode`` is its permission bits."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(path, f"readable by others (mode {mode:o})")
        self.mode = mode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def create_secret(path: Path, data: bytes, *, parents: bool = False) -> None:
    """Create ``path`` with mode 0600 holding ``data``; FileExistsError if anything is there.

    With ``parents``, missing parent directories are made first. A write that fails
    removes the file it created, so a failed attempt never leaves a truncated key behind
    for the next one to refuse to replace.
    """
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def replace_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, replacing any file there.

    A missing parent directory is made with mode 0700. Readers see the old file or the new
    one, never a part of either; on failure the old file is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, 0o600)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _refuse(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFile(path)
    if mode & OPEN_TO_OTHERS:
        raise ReadableByOthers(path, stat.S_IMODE(mode))


def read_secret(path: Path) -> bytes:
    """The bytes of the secret file ``path``; refuses one that is not private.

    Raises NotARegularFile, ReadableByOthers, or the OSError of opening or reading it
    (FileNotFoundError when there is none). Opening does not block on a FIFO.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        _refuse(path, os.stat(path).st_mode)  # say what is wrong with it, if it shows
        raise
    try:
        _refuse(path, os.fstat(fd).st_mode)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
