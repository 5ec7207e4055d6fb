"""The extractor's filesystem operations: safe directory flags, whole writes, early writeback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from gateway.tree.errors import ExtractError, TreeError
from gateway.tree.names import quoted

#: How every directory under the target is opened: never through a symbolic link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def fs_errors(path: str) -> Iterator[None]:
    """A filesystem failure (no space, I/O error, permissions) as an ExtractError naming ``path``."""
    try:
        yield
    except TreeError:
        raise
    except OSError as exc:
        raise ExtractError(f"{quoted(path)}: {exc.strerror or exc}", path=path) from None


def write_all(fd: int, data: memoryview) -> int:
    view = data
    while len(view):
        view = view[os.write(fd, view) :]
    return len(data)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing a range out now, so the file's fsync waits less."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)
