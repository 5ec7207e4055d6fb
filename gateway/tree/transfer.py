"""The archive through age STREAM: what a push seals and a pull opens, from any chunk.

Design note. The archive is the plaintext of an ordinary age file (C2SP age,
"Payload"): :func:`seal_tree` yields the STREAM ciphertext of a plan's archive from chunk
``start_chunk`` on (:func:`gateway.age.stream.seal` over a :class:`TarStream` started at
that chunk's first byte), so a resumed push seals and sends only what the gateway lacks
and reads no file before it. :func:`extract_payload` restores what
:func:`gateway.age.stream.unseal` yields (from chunk ``start_chunk`` on) into a
directory, and :func:`resume_chunk` says from which chunk an interrupted extraction
needs the stream again. The standard tools read the same file:
``age -d -i KEY FILE | tar -x`` restores the same tree.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.age import stream
from gateway.age.stream import CHUNK, SEALED
from gateway.tree.commit import Commit, FileEntry
from gateway.tree.extract import ArchiveCheck, Extracted, extract, restart_offset
from gateway.tree.plan import Plan
from gateway.tree.tarfmt import Layout
from gateway.tree.tarread import PiecesReader
from gateway.tree.writer import OnFile, TarStream


def archive_size(plan: Plan) -> int:
    """The plaintext size of the age file: the archive's bytes, from the plan alone."""
    return Layout(plan.members).size


def seal_tree(
    plan: Plan,
    aead: ChaCha20Poly1305,
    *,
    start_chunk: int = 0,
    commit: Commit | None = None,
    on_file: OnFile | None = None,
    threads: int | None = None,
) -> tuple[TarStream, Iterator[memoryview]]:
    """The archive's STREAM ciphertext from ``start_chunk`` on, and the stream read.

    The stream hashes on a helper thread (``hash_behind``, which ``seal`` allows); its
    ``commitments`` are complete once the ciphertext has been read to its end, or the
    stream closed. ``aead`` is :func:`gateway.age.stream.payload_key`'s.
    """
    src = TarStream(
        plan, start=start_chunk * CHUNK, commit=commit, on_file=on_file, hash_behind=True
    )
    return src, stream.seal(src, aead, threads, start_chunk=start_chunk)


def age_file_from(
    plan: Plan,
    aead: ChaCha20Poly1305,
    prefix: bytes,
    offset: int,
    *,
    commit: Commit | None = None,
    on_file: OnFile | None = None,
    threads: int | None = None,
) -> tuple[TarStream, Iterator[bytes | memoryview]]:
    """The whole age file (``prefix``: its header and payload nonce) from byte ``offset`` on.

    For a push resumed at a part: ``offset`` is where the first part the gateway lacks
    begins. Sealing starts at the chunk holding ``offset``; nothing before it is read.
    """
    if offset < len(prefix):
        src, pieces = seal_tree(plan, aead, commit=commit, on_file=on_file, threads=threads)
        return src, itertools.chain([prefix[offset:]], pieces)
    into = offset - len(prefix)  # bytes into the sealed chunks
    chunk = min(into // SEALED, max(stream.chunk_count(archive_size(plan)) - 1, 0))
    src, pieces = seal_tree(
        plan, aead, start_chunk=chunk, commit=commit, on_file=on_file, threads=threads
    )
    return src, _skip(pieces, into - chunk * SEALED)


def _skip(pieces: Iterator[memoryview], n: int) -> Iterator[bytes | memoryview]:
    for piece in pieces:
        if n >= len(piece):
            n -= len(piece)
            continue
        yield piece[n:]
        n = 0


def resume_chunk(dest: str | os.PathLike[str]) -> int:
    """The chunk to decrypt from to resume an interrupted extraction into ``dest`` (0: all)."""
    return restart_offset(dest) // CHUNK


def extract_payload(
    pieces: Iterable[bytes | memoryview],
    dest: str | os.PathLike[str],
    files: Iterable[FileEntry],
    commit: Commit,
    *,
    start_chunk: int = 0,
    archive: ArchiveCheck | None = None,
) -> Extracted:
    """Restore the plaintext ``pieces`` (the archive from chunk ``start_chunk`` on) into ``dest``."""
    return extract(
        PiecesReader(iter(pieces)),
        dest,
        files,
        commit,
        src_offset=start_chunk * CHUNK,
        archive=archive,
    )
