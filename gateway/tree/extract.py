"""Restoring an archive into a directory: every file verified before it gets its name.

Design note. :func:`extract` reads a tar stream (:class:`gateway.tree.tarread.TarReader`:
only the profile's member types) and writes into ``DIR`` only, through directory file
descriptors: every directory is opened relative to its parent with ``O_NOFOLLOW |
O_DIRECTORY``, every file created with ``O_EXCL | O_NOFOLLOW`` relative to a descriptor,
so neither a hostile name nor a symbolic link planted in ``DIR`` while it runs can make
it write elsewhere. Each member must be admitted first: a name seen before, or equal
to one under :func:`gateway.tree.names.fold_key`, is refused; its directory must be an
earlier directory member (so no path goes through a file or a link); a file must be in
the manifest's ``files`` with exactly its size (checked at its header, before a byte of
it is written). A file's data goes to ``DIR/.gateway-incoming/current``, mode 0600,
through the caller's hasher; only when its commitment equals the manifest's (compared
in constant time) is it given its mode, fsynced and linked to its name (a link never
replaces an existing name), and recorded in the journal (:mod:`gateway.tree.journal`).
At the end every manifest file must have come, and the archive transcript
(:mod:`gateway.tree.commit`) must equal the manifest's archive commitment, if given.

On failure, the error names the member; the file being written is deleted; what is
left is the files already verified, at their names, the directories made, and
``DIR/.gateway-incoming/journal`` recording them. Run again on the same ``DIR`` with the
same manifest, :func:`extract` resumes: it checks that each recorded file is as it was
left, then reads the stream from :func:`restart_offset` (a stream starting earlier is
skipped forward). A run stopped between naming a verified file and recording it leaves
that file unrecorded at its name: the first member after the restart may find its own
name taken, and adopts what is there if it is a directory or a file with the member's
commitment. On success ``.gateway-incoming`` is removed.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gateway.age.stream import ReadInto
from gateway.tree.commit import Commit, FileEntry, Hasher, Transcript
from gateway.tree.errors import CommitmentMismatch, ExtractError, ResumeError
from gateway.tree.fsops import DIR_FLAGS, fs_errors, link_no_replace, write_all
from gateway.tree.journal import CURRENT, JOURNAL, Done, Journal, fingerprint, restart_offset
from gateway.tree.names import RESERVED, fold_key, quoted
from gateway.tree.plan import DIR, FILE, MAX_MEMBERS
from gateway.tree.tarread import Header, TarReader

COPY = 1 << 20
WRITEBACK = 32 << 20


def _write_at(fd: int, piece: memoryview, at: int) -> None:
    """Write ``piece`` (the bytes from ``at`` on); past each ``WRITEBACK`` bytes, ask the
    kernel to start writing the file out, so its fsync once verified waits less."""
    write_all(fd, piece)
    if (at + len(piece)) // WRITEBACK > at // WRITEBACK and hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


@dataclass(frozen=True)
class Extracted:
    files: int  #: in the archive, resumed ones included
    directories: int
    resumed_at: int  #: the archive offset this run started from (0: from the start)
    archive_commitment: bytes | None  #: the transcript's, when a hasher was given


@dataclass(frozen=True)
class ArchiveCheck:
    """The archive commitment the manifest signs, and a fresh hasher to recompute it."""

    expected: bytes
    hasher: Hasher


def extract(
    src: ReadInto,
    dest: str | os.PathLike[str],
    files: Iterable[FileEntry],
    commit: Commit,
    *,
    src_offset: int = 0,
    archive: ArchiveCheck | None = None,
) -> Extracted:
    """Restore the archive read from ``src`` (which starts at ``src_offset``) into ``dest``.

    ``dest`` is created if missing; it must be empty unless it holds an interrupted
    extraction of the same manifest, which is resumed. ExtractError (CommitmentMismatch
    for content) names the member refused; ResumeError when a resume cannot go on.
    """
    job = _Extraction(os.fspath(dest), list(files), commit, archive)
    try:
        return job.run(src, src_offset)
    finally:
        job.close()


class _Extraction:
    def __init__(
        self, dest: str, files: list[FileEntry], commit: Commit, archive: ArchiveCheck | None
    ) -> None:
        self.dest, self.commit, self.archive = dest, commit, archive
        self.expected = {f.path: f for f in files}
        self.manifest = fingerprint(files)
        self.kinds: dict[str, str] = {}
        self.dirs = 0
        self.folded: dict[str, str] = {}
        self.transcript = Transcript(archive.hasher) if archive else None
        self.root = self.staging = -1
        self.journal: Journal | None = None
        self.parent_path, self.parent_fd = "", -1
        self.buf = memoryview(bytearray(COPY))
        self.adopt = False  #: resuming: the next member may already be in place
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="tree-write")

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()
        for fd in (self.parent_fd, self.staging, self.root):
            if fd >= 0:
                os.close(fd)

    def run(self, src: ReadInto, src_offset: int) -> Extracted:
        restart = self._open()
        if src_offset > restart:
            raise ResumeError(
                f"the archive stream starts at {src_offset}, after where the extraction "
                f"stopped ({restart})"
            )
        reader = TarReader(src, src_offset)
        reader.skip_to(restart)
        try:
            while (header := reader.next()) is not None:
                commitment = self._member(header, reader)
                if self.transcript is not None:
                    self.transcript.member(header.raw, commitment)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(CURRENT, dir_fd=self.staging)
        return self._finish(restart)

    def _open(self) -> int:
        """Open ``dest`` and its staging directory, fresh or resumed; the restart offset."""
        with fs_errors(self.dest):
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.dest, 0o755)
            self.root = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            entries = os.listdir(self.root)
            if RESERVED not in entries:
                if entries:
                    raise ExtractError(
                        f"{quoted(self.dest)}: not empty; restore into a new or empty directory"
                    )
                os.mkdir(RESERVED, 0o700, dir_fd=self.root)
            self.staging = os.open(RESERVED, DIR_FLAGS, dir_fd=self.root)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(CURRENT, dir_fd=self.staging)  # never verified: it starts again
            if entries == [RESERVED] and JOURNAL not in os.listdir(self.staging):
                entries = []  # stopped before its journal was made: nothing to resume
            if RESERVED not in entries:
                self.journal = Journal.create(self.staging, self.manifest)
                return 0
        self.journal, done = Journal.reopen(self.staging, self.manifest)
        self.adopt = True
        for d in done:
            self._resume_member(d)
        return done[-1].end if done else 0

    def _resume_member(self, d: Done) -> None:
        self._admit(d.path, d.kind)
        if d.kind == FILE:
            parent, name = self._parent(d.path)
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if (
                st is None
                or not stat.S_ISREG(st.st_mode)
                or ((st.st_ino, st.st_size, st.st_mtime_ns) != (d.inode, d.size, d.mtime_ns))
            ):
                raise ResumeError(
                    f"{quoted(d.path)}: changed or gone since it was verified; "
                    f"restore into a new directory",
                    path=d.path,
                )
        if self.transcript is not None:
            self.transcript.member(d.header, d.commitment)

    def _admit(self, path: str, kind: str) -> None:
        shown = quoted(path)
        if path in self.kinds:
            raise ExtractError(f"{shown}: appears twice in the archive", path=path)
        key = fold_key(path)
        if key in self.folded:
            raise ExtractError(
                f"{shown}: clashes with {quoted(self.folded[key])} "
                "(they differ only by case or Unicode normalisation)",
                path=path,
            )
        parent = path.rpartition("/")[0]
        if parent and self.kinds.get(parent) != DIR:
            what = "a file" if parent in self.kinds else "not an earlier directory member"
            raise ExtractError(f"{shown}: its directory {quoted(parent)} is {what}", path=path)
        if kind == FILE and path not in self.expected:
            raise ExtractError(f"{shown}: not in the signed manifest", path=path)
        if kind == DIR:
            self.dirs += 1
            if self.dirs > MAX_MEMBERS:
                raise ExtractError(f"{shown}: more than {MAX_MEMBERS} directories", path=path)
        self.kinds[path] = kind
        self.folded[key] = path

    def _member(self, header: Header, reader: TarReader) -> bytes | None:
        self._admit(header.path, header.kind)
        parent, name = self._parent(header.path)
        if header.kind == DIR:
            with fs_errors(header.path):
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                    if not (self.adopt and stat.S_ISDIR(st.st_mode)):
                        raise ExtractError(
                            f"{quoted(header.path)}: already exists", path=header.path
                        ) from None
            self.adopt = False
            self._record(Done(header.path, DIR, header.raw, None, reader.offset))
            return None
        entry = self.expected[header.path]
        if header.size != entry.size:
            raise ExtractError(
                f"{quoted(header.path)}: {header.size} bytes in the archive, "
                f"{entry.size} in the signed manifest",
                path=header.path,
            )
        st = self._write_file(header, reader, entry, parent, name)
        self.adopt = False
        self._record(
            Done(
                header.path,
                FILE,
                header.raw,
                entry.commitment,
                reader.offset,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            )
        )
        return entry.commitment

    def _write_file(
        self, header: Header, reader: TarReader, entry: FileEntry, parent: int, name: str
    ) -> os.stat_result:
        """Write, verify and link one file into place; its stat once there."""
        with fs_errors(header.path):
            fd = os.open(
                CURRENT,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self.staging,
            )
        try:
            hasher, at = self.commit(header.path), 0
            while len(piece := reader.read_data(self.buf)):
                # Write on the helper thread while this one hashes: both calls release the
                # GIL, so they run side by side; the piece is valid only until the next
                # read, so both are done before it.
                written = self.writer.submit(_write_at, fd, piece, at)
                at += len(piece)
                try:
                    hasher.update(piece)
                finally:
                    with fs_errors(header.path):
                        written.result()
            if not hmac.compare_digest(hasher.digest(), entry.commitment):
                raise CommitmentMismatch(
                    f"{quoted(header.path)}: its content differs from the signed manifest",
                    path=header.path,
                )
            with fs_errors(header.path):
                os.fchmod(fd, header.mode)
                os.fsync(fd)
                st = os.fstat(fd)
        finally:
            os.close(fd)
        with fs_errors(header.path):
            try:
                link_no_replace(self.staging, parent, name, header.path)
            except ExtractError:
                adopted = self._adopt(entry, parent, name)
                if adopted is None:
                    raise
                os.unlink(CURRENT, dir_fd=self.staging)
                return adopted
        return st

    def _adopt(self, entry: FileEntry, parent: int, name: str) -> os.stat_result | None:
        """The stat of a file already at ``name`` that is the verified member, else None.

        Only for the first member after a resume: a run stopped between linking a
        verified file and recording it leaves the file there, unrecorded.
        """
        if not self.adopt:
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                return None
            hasher = self.commit(entry.path)
            while n := os.readv(fd, [self.buf]):
                hasher.update(self.buf[:n])
            return st if hmac.compare_digest(hasher.digest(), entry.commitment) else None
        finally:
            os.close(fd)

    def _parent(self, path: str) -> tuple[int, str]:
        """A descriptor of ``path``'s directory (opened without following links), and its name."""
        parent, _, name = path.rpartition("/")
        return self._dir_fd(parent), name

    def _dir_fd(self, parent: str) -> int:
        """A descriptor of the directory member ``parent`` ("" for ``dest``), kept until the next."""
        if not parent:
            return self.root
        if parent != self.parent_path or self.parent_fd < 0:
            fd = os.dup(self.root)
            try:
                for part in parent.split("/"):
                    nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = nxt
            except OSError as exc:
                os.close(fd)
                raise ExtractError(
                    f"{quoted(parent)}: cannot be opened safely: {exc.strerror}", path=parent
                ) from None
            if self.parent_fd >= 0:
                os.close(self.parent_fd)
            self.parent_path, self.parent_fd = parent, fd
        return self.parent_fd

    def _record(self, done: Done) -> None:
        assert self.journal is not None
        self.journal.record(done)

    def _finish(self, restart: int) -> Extracted:
        missing = [p for p in self.expected if p not in self.kinds]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ExtractError(
                f"{quoted(missing[0])}{more}: in the signed manifest but not in the archive",
                path=missing[0],
            )
        commitment = None
        if self.transcript is not None and self.archive is not None:
            commitment = self.transcript.finish()
            if not hmac.compare_digest(commitment, self.archive.expected):
                raise CommitmentMismatch(
                    "the archive's headers (names, modes, directories) differ from the "
                    "signed archive commitment"
                )
        self._sync_dirs()
        assert self.journal is not None
        self.journal.close()
        self.journal = None
        os.unlink(JOURNAL, dir_fd=self.staging)
        os.close(self.staging)
        self.staging = -1
        os.rmdir(RESERVED, dir_fd=self.root)
        return Extracted(len(self.kinds) - self.dirs, self.dirs, restart, commitment)

    def _sync_dirs(self) -> None:
        """Make the names durable: fsync every directory made, then ``dest`` itself."""
        for path, kind in self.kinds.items():
            if kind == DIR:
                os.fsync(self._dir_fd(path))
        os.fsync(self.root)


__all__ = ["ArchiveCheck", "Extracted", "extract", "restart_offset"]
