"""The archive as a readable stream that starts at any offset, hashing files as it goes.

Design note. :class:`TarStream` produces the bytes of a plan's archive
(:mod:`gateway.tree.tarfmt`) through ``readinto``, the interface
:func:`gateway.age.stream.seal` reads its plaintext from, so an archive is encrypted as
it is made and never staged on disk. Headers and padding come from the plan; file data
is read with ``os.preadv`` straight into the caller's buffer, so memory is the caller's
buffer plus one header whatever the tree's size.

``start`` may be any offset: the stream computes from the :class:`Layout` which member
holds it and begins there, reading no file before it. Each file is opened when the
stream reaches its data, and checked against the identity planned (device, inode, size,
modification time, by ``fstat`` of the open descriptor, so a file swapped for another,
through a link or not, is noticed) and again when its data ends; a file that shrinks,
grows or changes raises :class:`FileChanged`. With ``commit``, every file whose data
the stream covers from its first byte gets a commitment; a file the stream starts in
the middle of has its first part read once more, only to be hashed (at most that one
file). ``on_file(path, commitment)`` is called as each is done, so a push can keep them
for a later resume.

With ``hash_behind``, hashing runs on a helper thread, overlapping the next read (and
the caller's use of the bytes, such as encrypting them): the bytes one ``readinto``
returned are hashed while the caller reads the next ones, so the caller must not change
a buffer it passed until the ``readinto`` after next (or ``close``): two buffers used in
turn are enough. :func:`gateway.age.stream.seal` keeps to that (it reads each batch into
one of a ring of at least two slot buffers and encrypts into another). ``on_file`` is
then called on the helper thread, and ``commitments`` is complete once the stream has
been read to its end or closed.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from gateway.tree.commit import Commit, Hasher
from gateway.tree.errors import FileChanged
from gateway.tree.names import quoted
from gateway.tree.plan import FILE, Identity, Member, Plan
from gateway.tree.tarfmt import Layout, member_header

HASH_BLOCK = 1 << 20
OnFile = Callable[[str, bytes], None]


class _Behind:
    """Hash updates and finalisations run in order on one helper thread.

    Jobs are grouped by the ``readinto`` call that queued them; :meth:`settle` waits
    only for the groups older than the last one, so the helper hashes one call's bytes
    while the stream reads the next call's (the two overlap instead of alternating).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tree-hash")
        self._groups: deque[list[Future[None]]] = deque()

    def run(self, job: Callable[[], None]) -> None:
        if not self._groups:
            self._groups.append([])
        self._groups[-1].append(self._pool.submit(job))

    def turn(self) -> None:
        """Start a new group: what ``run`` queues next belongs to the next ``readinto``."""
        self._groups.append([])

    def settle(self, keep: int) -> None:
        """Wait until at most ``keep`` groups are unfinished; the first error is raised."""
        while len(self._groups) > keep:
            for job in self._groups.popleft():
                job.result()

    def wait(self) -> None:
        """Wait for every job queued; the first one's error, if any, is raised."""
        self.settle(0)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def open_member(plan: Plan, member: Member) -> int:
    """A read-only descriptor of ``member``'s file, checked against its planned identity."""
    path = os.path.join(plan.root, *member.path.split("/"))
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if plan.follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileChanged(
            f"{quoted(member.path)}: cannot open: {exc.strerror}", path=member.path
        ) from None
    try:
        check_identity(fd, member, "since it was planned")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_identity(fd: int, member: Member, when: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or Identity.of(st) != member.identity:
        raise FileChanged(f"{quoted(member.path)}: changed {when}", path=member.path)


class TarStream:
    """A plan's archive from ``start`` on, as an unbuffered binary reader."""

    def __init__(
        self,
        plan: Plan,
        *,
        layout: Layout | None = None,
        start: int = 0,
        commit: Commit | None = None,
        on_file: OnFile | None = None,
        hash_behind: bool = False,
    ) -> None:
        self.plan = plan
        self.layout = layout or Layout(plan.members)
        self.offset = start
        self.commitments: dict[str, bytes] = {}
        self._commit, self._on_file = commit, on_file
        self._index = self.layout.at(start)  # raises for an offset outside the archive
        self._fd: int | None = None
        self._hasher: Hasher | None = None
        self._header = b""
        self._pending = self._covers(self._index)
        self._behind = _Behind() if hash_behind and commit is not None else None

    def _covers(self, index: int) -> bool:
        """Whether the stream, now at ``offset``, still has member ``index``'s file to read."""
        if index >= len(self.layout.members) or self.layout.members[index].kind != FILE:
            return False
        placed = self.layout.placed(index)
        return self.offset < placed.data_offset + placed.size or placed.size == 0

    # The stream is a sequence of regions: each member's header, its data, its padding,
    # then the end blocks; ``_fill`` serves the region that holds ``offset``.

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        view = memoryview(buffer).cast("B")
        if self._behind is not None:
            # The call before last's bytes are hashed (its buffer is free again); the last
            # call's may still be hashing while this one reads.
            self._behind.settle(1)
            self._behind.turn()
        done = 0
        while done < len(view) and self.offset < self.layout.size:
            done += self._fill(view[done:])
        if self.offset >= self.layout.size and self._behind is not None and not done:
            self._behind.wait()
        return done

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = self.layout.size - self.offset
        out = bytearray(max(0, min(size, self.layout.size - self.offset)))
        n = self.readinto(out)
        return bytes(out[:n])

    def close(self) -> None:
        """Close the file being read; with ``hash_behind``, finish every commitment first."""
        try:
            if self._behind is not None:
                self._behind.close()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> TarStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, view: memoryview) -> int:
        if self._index >= len(self.layout.members):
            return self._zeros(view, self.layout.size)
        placed = self.layout.placed(self._index)
        member = self.layout.members[self._index]
        if self.offset < placed.data_offset:
            if not self._header:
                self._header = member_header(member)
            at = self.offset - placed.header_offset
            n = min(len(view), placed.data_offset - self.offset)
            view[:n] = self._header[at : at + n]
            self.offset += n
            return n
        data_end = placed.data_offset + placed.size
        if self._pending and self._fd is None:
            self._open_file(member, self.offset - placed.data_offset)
        if self.offset < data_end:
            return self._data(view, member, data_end)
        if self._pending:  # an empty file: opened and checked, nothing to read
            self._finish_file(member)
        n = self._zeros(view, placed.end)
        if self.offset >= placed.end:
            self._index += 1
            self._header = b""
            self._pending = self._covers(self._index)
        return n

    def _zeros(self, view: memoryview, end: int) -> int:
        n = min(len(view), end - self.offset)
        view[:n] = bytes(n)
        self.offset += n
        return n

    def _data(self, view: memoryview, member: Member, data_end: int) -> int:
        assert self._fd is not None
        want = min(len(view), data_end - self.offset)
        got = os.preadv(self._fd, [view[:want]], member.size - (data_end - self.offset))
        if got <= 0:
            raise FileChanged(f"{quoted(member.path)}: got shorter while read", path=member.path)
        if self._hasher is not None:
            self._update(self._hasher, view[:got])
        self.offset += got
        if self.offset == data_end:
            self._finish_file(member)
        return got

    def _open_file(self, member: Member, into: int) -> None:
        fd = open_member(self.plan, member)
        self._fd = fd
        if self._commit is None:
            return
        self._hasher = self._commit(member.path)
        if into:  # started mid-file: hash what comes before, once, without emitting it
            block = bytearray(min(HASH_BLOCK, into))
            done = 0
            while done < into:
                n = os.preadv(fd, [memoryview(block)[: min(len(block), into - done)]], done)
                if n <= 0:
                    raise FileChanged(f"{quoted(member.path)}: got shorter", path=member.path)
                self._hasher.update(memoryview(block)[:n])
                done += n

    def _finish_file(self, member: Member) -> None:
        fd, hasher = self._fd, self._hasher
        self._fd, self._hasher, self._pending = None, None, False
        if fd is None:
            return
        try:
            check_identity(fd, member, "while it was read")
        finally:
            os.close(fd)
        if hasher is not None:
            done = hasher

            def finish() -> None:
                digest = done.digest()
                self.commitments[member.path] = digest
                if self._on_file is not None:
                    self._on_file(member.path, digest)

            if self._behind is not None:
                self._behind.run(finish)
            else:
                finish()

    def _update(self, hasher: Hasher, data: memoryview) -> None:
        if self._behind is not None:
            self._behind.run(lambda: hasher.update(data))
        else:
            hasher.update(data)
