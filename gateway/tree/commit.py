"""Commitments: per-file hashers the caller chooses, and the archive's own commitment.

Design note. This package never picks a hash. The caller (the manifest) passes a
:data:`Commit` factory, ``commit(path) -> Hasher``, called once per file with the
member's name, so a keyed hash can bind the name too; each file's content goes through
its hasher exactly once, in order, while it is archived or extracted.

The archive's commitment is computed the same way, by a hasher the caller gives, over
a *transcript* rather than the raw tar bytes: :data:`TRANSCRIPT_TAG`, then for each
member in order its header blocks (pax header included) and, for a file, its
commitment; then the two end-of-archive blocks. Header blocks are self-delimiting and
a commitment has its hasher's fixed size, so the transcript determines the archive's
every byte, given that the per-file commitments bind content. Unlike a hash of the tar
bytes it needs no file's content, so a push resumed at any offset and an extraction
resumed after its last verified file compute it without reading anything again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.tree.plan import FILE, Member
from gateway.tree.tarfmt import END_BLOCKS, member_header

TRANSCRIPT_TAG = b"gateway-tree-archive-v1\n"


class Hasher(Protocol):
    """What ``hashlib`` and ``hmac`` objects offer: ``update`` in order, then ``digest``."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


Commit = Callable[[str], Hasher]


@dataclass(frozen=True)
class FileEntry:
    """One file as the manifest lists it: name, size and content commitment."""

    path: str
    size: int
    commitment: bytes


class Transcript:
    """The archive commitment, fed member by member (see the module note)."""

    def __init__(self, hasher: Hasher) -> None:
        self._hasher = hasher
        hasher.update(TRANSCRIPT_TAG)

    def member(self, header: bytes, commitment: bytes | None) -> None:
        self._hasher.update(header)
        if commitment is not None:
            self._hasher.update(commitment)

    def finish(self) -> bytes:
        self._hasher.update(bytes(END_BLOCKS))
        return self._hasher.digest()


def archive_commitment(
    members: Sequence[Member], commitments: Mapping[str, bytes], hasher: Hasher
) -> bytes:
    """The archive commitment of a plan's members, from their files' commitments alone.

    KeyError names a file whose commitment is missing.
    """
    transcript = Transcript(hasher)
    for m in members:
        transcript.member(member_header(m), commitments[m.path] if m.kind == FILE else None)
    return transcript.finish()


def file_entries(members: Sequence[Member], commitments: Mapping[str, bytes]) -> list[FileEntry]:
    """The manifest's ``files`` list, in archive order; KeyError names a missing commitment."""
    return [FileEntry(m.path, m.size, commitments[m.path]) for m in members if m.kind == FILE]
