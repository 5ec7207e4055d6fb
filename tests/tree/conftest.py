"""Helpers for the directory tests: trees written from a spec, snapshots, a keyed commitment."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from gateway.tree.commit import FileEntry, Hasher, archive_commitment, file_entries
from gateway.tree.extract import ArchiveCheck, Extracted, extract
from gateway.tree.plan import Plan, plan_tree
from gateway.tree.writer import TarStream

KEY = b"k" * 32

#: A tree spec: relative path -> bytes (a file), None (a directory), or (bytes, 0o755).
Spec = Mapping[str, bytes | None | tuple[bytes, int]]


class _Keyed:
    """HMAC-SHA256 keyed by the test key and bound to the member's name."""

    def __init__(self, path: str) -> None:
        self._mac = hmac.new(KEY, path.encode() + b"\0", hashlib.sha256)

    def update(self, data: bytes | memoryview, /) -> None:
        self._mac.update(data)

    def digest(self) -> bytes:
        return self._mac.digest()


def commit(path: str) -> Hasher:
    return _Keyed(path)


def archive_hasher() -> Hasher:
    return hmac.new(KEY, b"archive\0", hashlib.sha256)


def write_tree(root: Path, spec: Spec) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in sorted(spec.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
            continue
        data, mode = content if isinstance(content, tuple) else (content, 0o644)
        path.write_bytes(data)
        path.chmod(mode)
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root``: kind, permission bits (files) and content digest."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", 0, "")
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", st.st_mode & 0o777, digest)
            else:
                out[rel] = ("other", st.st_mode, os.readlink(path) if path.is_symlink() else "")
    return out


def archive(plan: Plan) -> tuple[bytes, list[FileEntry], bytes]:
    """The whole archive of ``plan``, its files list and its archive commitment."""
    with TarStream(plan, commit=commit) as stream:
        data = stream.read()
    entries = file_entries(plan.members, stream.commitments)
    return data, entries, archive_commitment(plan.members, stream.commitments, archive_hasher())


def round_trip(src: Path, dest: Path) -> Extracted:
    data, entries, whole = archive(plan_tree(src))
    return extract(
        io.BytesIO(data), dest, entries, commit, archive=ArchiveCheck(whole, archive_hasher())
    )
