"""State of a push in progress, so an interrupted push resumes where it stopped.

One JSON file per push in ``<config dir>/pushes/``, mode 0600, named after the gateway
and the file's absolute path. It holds the upload id, the file's identity (path, size,
modification time, inode) and what makes the ciphertext reproducible: the age header
as sent, the payload nonce and the **file key**. A resumed push re-encrypts the file
from the start with the same key and nonce, which yields byte-identical ciphertext,
checks each part against the digest the gateway holds and sends only the parts that
are missing or differ.

The file key decrypts the upload, so the state file is written 0600 beside the
profiles (which already hold a bearer token), and deleted as soon as the upload
completes or is aborted. Nothing in it is sent anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.client.errors import PushStateError
from gateway.client.profiles import config_dir, write_private


@dataclass(frozen=True)
class FileIdentity:
    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        st = path.stat()
        return cls(
            path=str(path.resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino
        )


@dataclass(frozen=True)
class PushState:
    gateway: str
    upload: str
    file: FileIdentity
    name: str
    kind: str
    part_size: int
    header: str  # base64 of the age header bytes
    nonce: str  # base64, 16 bytes
    file_key: str  # base64, 16 bytes: secret, see the module docstring
    tree: str | None = None  # a directory's plan fingerprint; None for a file
    commitments: dict[str, str] | None = None  # a directory's files committed so far (hex)
    custody: str = "gateway"  # "lab": the header is to the lab's own recipients alone

    @property
    def header_bytes(self) -> bytes:
        return base64.b64decode(self.header)

    @property
    def nonce_bytes(self) -> bytes:
        return base64.b64decode(self.nonce)

    @property
    def file_key_bytes(self) -> bytes:
        return base64.b64decode(self.file_key)

    def __repr__(self) -> str:  # never print the file key
        return f"PushState(upload={self.upload!r}, file={self.file.path!r})"


def pushes_dir() -> Path:
    return config_dir() / "pushes"


def state_path(gateway: str, file_path: str) -> Path:
    digest = hashlib.sha256(f"{gateway}\n{file_path}".encode()).hexdigest()[:24]
    return pushes_dir() / f"{digest}.json"


def save(state: PushState) -> Path:
    path = state_path(state.gateway, state.file.path)
    write_private(path, json.dumps(asdict(state), indent=1, sort_keys=True).encode())
    return path


def _parse(path: Path) -> PushState:
    try:
        data = json.loads(path.read_text("utf-8"))
        data["file"] = FileIdentity(**data["file"])
        return PushState(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise PushStateError(f"{path}: unreadable push state ({exc})") from None


def load(gateway: str, file_path: str) -> PushState | None:
    path = state_path(gateway, file_path)
    if not path.exists():
        return None
    return _parse(path)


def all_saved() -> list[PushState]:
    """Every push state on this machine (unreadable ones are skipped), by upload id."""
    folder = pushes_dir()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(_parse(path))
        except PushStateError:
            continue
    return sorted(found, key=lambda s: s.upload)


def find(upload: str) -> PushState:
    """The saved state of upload ``upload`` (for ``gateway push --resume UPLOAD``): its id,
    or a prefix of it that only one saved push has."""
    folder = pushes_dir()
    matches = [s for s in all_saved() if s.upload.startswith(upload)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PushStateError(f"{upload} is the start of {len(matches)} interrupted uploads' ids")
    raise PushStateError(
        f"no interrupted push of upload {upload} on this machine (looked in {folder})"
    )


def delete(state: PushState) -> None:
    """Forget a push (and its file key)."""
    path = state_path(state.gateway, state.file.path)
    try:
        size = path.stat().st_size
        with open(path, "r+b") as fh:  # overwrite before unlinking: the file key goes first
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
    except FileNotFoundError:
        return
    path.unlink(missing_ok=True)
