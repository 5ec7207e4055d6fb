"""A directory as a plan: its members in archive order, validated, each with a cheap identity.

Design note. :func:`plan_tree` walks a directory once and returns a :class:`Plan`: every
directory and regular file under it (the root itself excluded), sorted by
:func:`gateway.tree.names.sort_key`, each with its size, its archive mode (files 0644,
or 0755 when the owner may execute them; directories 0755) and, for files, an
:class:`Identity` (device, inode, size, modification time) that lets a resumed push
notice a file that changed. Refused, with the path named: symbolic links (followed only
with ``follow_symlinks``, cycles refused), hard links (a file with more than one link;
stored as independent copies only with ``copy_hard_links``), devices, FIFOs, sockets,
names :func:`gateway.tree.names.check_name` refuses, names that clash under
:func:`gateway.tree.names.fold_key`, and more than ``max_members`` members. Nothing
here reads a file's content.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from gateway.tree.errors import BadName, PlanError
from gateway.tree.names import check_name, fold_key, quoted, sort_key

FILE = "file"
DIR = "dir"
MAX_MEMBERS = 100_000


@dataclass(frozen=True)
class Identity:
    """What a file was when planned; a file whose identity differs has changed."""

    dev: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Member:
    """One entry of the archive: a regular file or a directory, by its relative path."""

    path: str
    kind: str  #: FILE or DIR
    size: int  #: bytes of content; 0 for a directory
    mode: int  #: 0o644 or 0o755
    identity: Identity | None = None  #: files only


@dataclass(frozen=True)
class Plan:
    """A directory's members in archive order, and how it was walked."""

    root: str
    members: tuple[Member, ...]
    follow_symlinks: bool = False

    def files(self) -> Iterator[Member]:
        return (m for m in self.members if m.kind == FILE)

    @property
    def content_size(self) -> int:
        """The bytes of every file's content together."""
        return sum(m.size for m in self.members)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON, for a push's state file; :meth:`from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        members = tuple(
            Member(
                path=m["path"],
                kind=m["kind"],
                size=m["size"],
                mode=m["mode"],
                identity=None if m["identity"] is None else Identity(**m["identity"]),
            )
            for m in data["members"]
        )
        return cls(data["root"], members, bool(data["follow_symlinks"]))

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the plan's JSON: equal for the same tree in the same state."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _mode(st: os.stat_result) -> int:
    if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR:
        return 0o755
    return 0o644


def _kind_word(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file or directory"


class _Walk:
    def __init__(
        self, follow: bool, copy_hard_links: bool, max_members: int, skip: frozenset[str]
    ) -> None:
        self.follow, self.copy_hard_links, self.max_members = follow, copy_hard_links, max_members
        self.skip = skip
        self.members: list[Member] = []
        self.folded: dict[str, str] = {}

    def add(self, rel: str, st: os.stat_result) -> None:
        try:
            check_name(rel)
        except BadName as exc:
            raise PlanError(exc.detail, path=rel) from None
        key = fold_key(rel)
        if key in self.folded:
            raise PlanError(
                f"{quoted(rel)} and {quoted(self.folded[key])} differ only by case or "
                "Unicode normalisation, and would clash on many filesystems",
                path=rel,
            )
        self.folded[key] = rel
        if len(self.members) >= self.max_members:
            raise PlanError(f"more than {self.max_members} files and directories", path=rel)
        if stat.S_ISDIR(st.st_mode):
            self.members.append(Member(rel, DIR, 0, 0o755))
        else:
            self.members.append(Member(rel, FILE, st.st_size, _mode(st), Identity.of(st)))

    def entry_stat(self, path: str, rel: str) -> os.stat_result:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if not self.follow:
                raise PlanError(
                    f"{quoted(rel)}: a symbolic link (links are not archived; "
                    "follow them only by asking to)",
                    path=rel,
                )
            try:
                st = os.stat(path)
            except OSError:
                raise PlanError(f"{quoted(rel)}: a symbolic link to nothing", path=rel) from None
        if stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1 and not self.copy_hard_links:
                raise PlanError(
                    f"{quoted(rel)}: a hard link ({st.st_nlink} names for one file)", path=rel
                )
            return st
        if stat.S_ISDIR(st.st_mode):
            return st
        raise PlanError(f"{quoted(rel)}: {_kind_word(st.st_mode)}", path=rel)

    def walk(self, path: str, rel: str, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            names = sorted(os.listdir(path), key=lambda n: n.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise PlanError(
                f"{quoted(rel or '.')}: cannot list: {exc.strerror}", path=rel
            ) from None
        for name in names:
            child_rel = f"{rel}/{name}" if rel else name
            if child_rel in self.skip:
                continue
            child = os.path.join(path, name)
            st = self.entry_stat(child, child_rel)
            self.add(child_rel, st)
            if stat.S_ISDIR(st.st_mode):
                here = (st.st_dev, st.st_ino)
                if here in ancestors:
                    raise PlanError(
                        f"{quoted(child_rel)}: a link back to a directory above it", path=child_rel
                    )
                self.walk(child, child_rel, ancestors | {here})


def plan_tree(
    root: str | os.PathLike[str],
    *,
    follow_symlinks: bool = False,
    copy_hard_links: bool = False,
    exclude: Iterable[str] = (),
    max_members: int = MAX_MEMBERS,
) -> Plan:
    """Walk ``root`` into a :class:`Plan`; PlanError names the first path refused.

    ``exclude`` holds member names left out with everything under them (for example
    ``.git``); they are checked as names first.
    """
    top = os.path.abspath(root)
    try:
        st = os.stat(top)
    except OSError as exc:
        raise PlanError(f"{quoted(str(root))}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PlanError(f"{quoted(str(root))}: not a directory")
    for name in exclude:
        try:
            check_name(name)
        except BadName as exc:
            raise PlanError(f"exclude: {exc.detail}", path=name) from None
    walker = _Walk(follow_symlinks, copy_hard_links, max_members, frozenset(exclude))
    walker.walk(top, "", frozenset({(st.st_dev, st.st_ino)}))
    members = sorted(walker.members, key=lambda m: sort_key(m.path))
    return Plan(top, tuple(members), follow_symlinks)
