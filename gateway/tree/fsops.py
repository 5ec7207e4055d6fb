"""The extractor's filesystem operations: safe directory flags, whole writes, errors.

No early writeback (``posix_fadvise(DONTNEED)`` every few MiB, as a single-file pull
does): in the runs measured here (2 GiB, on a loaded machine) it made an extraction
slower, not faster.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from gateway.tree.errors import ExtractError, TreeError
from gateway.tree.journal import CURRENT
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


def link_no_replace(staging: int, parent: int, name: str, path: str) -> None:
    """Give the staged ``current`` file the name ``name`` in ``parent``, never replacing one."""
    try:
        os.link(CURRENT, name, src_dir_fd=staging, dst_dir_fd=parent, follow_symlinks=False)
    except FileExistsError:
        raise ExtractError(f"{quoted(path)}: already exists", path=path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A filesystem without hard links: rename, after checking the name is free.
        with contextlib.suppress(FileNotFoundError):
            os.stat(name, dir_fd=parent, follow_symlinks=False)
            raise ExtractError(f"{quoted(path)}: already exists", path=path) from None
        os.rename(CURRENT, name, src_dir_fd=staging, dst_dir_fd=parent)
        return
    os.unlink(CURRENT, dir_fd=staging)
