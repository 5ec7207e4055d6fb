"""The gateway's own key files (``keys/``): created 0600 once, read only if nobody else can.

The custody identities are not kept here: :mod:`gateway.custody` wraps them (values of
the old ``keys/master.key`` are read by its ``local`` backend).
"""

from __future__ import annotations

from pathlib import Path

from gateway.errors import GatewayError
from gateway.keyfiles import NotARegularFile, ReadableByOthers, create_secret, read_secret


class KeyStoreError(GatewayError):
    status, slug, title = 500, "key-store", "Key store error"


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` (and its directory) with mode 0600 holding ``data``.

    Never overwrites: FileExistsError if the file exists.
    """
    create_secret(path, data, parents=True)


def read_secret_file(path: Path) -> bytes:
    """Read a key file, refusing one that others can read or that is not a regular file."""
    try:
        return read_secret(path)
    except FileNotFoundError:
        raise KeyStoreError(f"key file {path} not found; run `gateway init`") from None
    except ReadableByOthers:
        raise KeyStoreError(f"key file {path} is readable by others; chmod 600 {path}") from None
    except NotARegularFile:
        raise KeyStoreError(f"key file {path} is not a regular file") from None
