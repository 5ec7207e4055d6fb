"""Where a pull writes, checked before a byte is fetched; what it says when it stops.

``-o FILE`` must be a new regular file, or an existing one with ``--force`` (replaced
only once the new one is verified). A directory, a device (``/dev/null``), a pipe or a
socket is refused: a pull writes ``FILE.part`` beside the output (mode 0600) and renames
it into place, which would replace a device with a regular file. The output's
filesystem must have room for what is still to come.

When a pull stops part-way, :func:`stopped` says what was kept and where, and the exact
command that resumes: a dropped connection, a stopped gateway, a full disk or an
interrupt keep ``FILE.part`` (decrypted chunks, each authenticated, the whole not yet
verified); a refusal that ends the access (a revoked grant, a withdrawn artifact) and a
download that is not the lab's delete it.
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.client import humane
from gateway.client.errors import (
    ClientError,
    InvocationError,
    PullError,
    TransferStopped,
    WriteFailed,
)
from gateway.client.http import ApiError
from gateway.client.pull import part_path

INTERRUPTED = 130
ENDED = (403, 404, 410)  # access refused or the artifact gone: nothing to resume


def check_output(output: str, *, force: bool) -> Path:
    """The output path of ``-o``, if a pull may write there (see the module's note)."""
    out = Path(output)
    try:
        st = out.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InvocationError(f"{out}: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InvocationError(
            f"{out} is a directory", hint=f"give the file to write in it, e.g. -o {out / 'NAME'}"
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InvocationError(
            f"{out} is not a regular file (a device, a pipe or a socket): a pull writes a new file",
            hint="give a file name with -o; `-o -` prints a credential on stdout",
        )
    if st is not None and not force:
        raise InvocationError(
            f"{out} exists", hint="pass --force to replace it once the new file is verified"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InvocationError(f"{parent} is not a directory: nowhere to write {out.name}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvocationError(f"{parent}: cannot write there (permission denied)")
    partial = part_path(out)
    if partial.is_symlink() or (partial.exists() and not partial.is_file()):
        raise InvocationError(f"{partial} exists and is not a regular file: remove it first")
    return out


def check_room(out: Path, total: int) -> None:
    """Refuse a pull that cannot fit: the space free beside ``out`` against what is to come."""
    partial = part_path(out)
    have = partial.stat().st_size if partial.is_file() else 0
    need = max(0, total - have)
    folder = out.parent if str(out.parent) else Path(".")
    try:
        fs = os.statvfs(folder)
    except OSError:
        return
    free = fs.f_bavail * fs.f_frsize
    if need > free:
        raise InvocationError(
            f"{folder} has {humane.size(free)} free, and {out.name} needs {humane.size(need)} more",
            hint="free some space, or pull onto another disk with -o",
        )


@dataclass(frozen=True)
class PullCommand:
    """The pull as typed, to say the command that resumes it."""

    artifact: str
    output: Path
    identity: Path | None
    raw: bool
    force: bool
    profile: str | None

    def line(self) -> str:
        words = ["gateway", "pull", self.artifact, "-o", str(self.output)]
        if self.identity is not None:
            words += ["-i", str(self.identity)]
        words += [flag for flag, on in (("--raw", self.raw), ("--force", self.force)) if on]
        if self.profile:
            words += ["--profile", self.profile]
        return shlex.join(words)


def _kept(partial: Path, total: int, raw: bool) -> str:
    have = partial.stat().st_size if partial.is_file() else 0
    what = "of the age file" if raw else "decrypted, each chunk authenticated, not yet verified"
    return f"{humane.size(have)} of {humane.size(total)} kept in {partial} ({what}, mode 0600)"


def stopped(exc: BaseException, command: PullCommand, total: int) -> ClientError:
    """The error a pull that stopped with ``exc`` ends with (see the module's note)."""
    partial = part_path(command.output)
    again = f"run `{command.line()}` to resume"
    if isinstance(exc, KeyboardInterrupt):
        return TransferStopped(
            f"interrupted; {_kept(partial, total, command.raw)}", hint=again, exit_code=INTERRUPTED
        )
    if isinstance(exc, WriteFailed):
        return TransferStopped(
            f"{exc.detail}; {_kept(partial, total, command.raw)}",
            hint=f"free some space (or fix the disk), then {again}, or delete {partial}",
        )
    if isinstance(exc, PullError) or (isinstance(exc, ApiError) and exc.status in ENDED):
        existed = partial.is_file()
        partial.unlink(missing_ok=True)
        gone = f"; {partial} was deleted" if existed else ""
        return TransferStopped(f"{exc.detail}{gone}", hint=exc.hint)
    if isinstance(exc, ApiError):
        return TransferStopped(f"{exc.detail}; {_kept(partial, total, command.raw)}", hint=again)
    raise exc
