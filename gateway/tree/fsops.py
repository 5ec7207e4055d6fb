"""The extractor's filesystem operations: safe directory flags, whole writes, errors.

No early writeback (``posix_fadvise(DONTNEED)`` every few MiB, as a single-file pull
does): measured here on 2 GiB it made an extraction a third slower, not faster.
"""

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
