"""Extraction fed by ``write`` calls, for a decryptor that pushes its plaintext to a sink.

Design note. :func:`gateway.tree.extract.extract` pulls its input. A decryptor that
writes its plaintext to a file object (as the single-file pull does) can give it
:class:`ExtractSink` instead: each ``write`` copies the bytes (the caller may reuse its
buffer at once) into a bounded queue, at most ``depth`` pieces, which a helper thread
feeds to the extractor. A write after the extractor failed raises its error;
:meth:`ExtractSink.close` waits for the end and returns what was extracted, or raises
the extractor's error; :meth:`ExtractSink.abort` stops it as a dropped connection would,
leaving the directory resumable.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator

from gateway.tree.commit import Commit, FileEntry
from gateway.tree.extract import ArchiveCheck, Extracted
from gateway.tree.transfer import extract_payload


class _End:
    """Queued after the archive's last byte."""


_END = _End()


class Aborted(ConnectionAbortedError):
    """The decryption feeding the extraction stopped before the archive's end."""


class ExtractSink:
    """A binary file's ``write`` end whose bytes are the archive from chunk ``start_chunk`` on."""

    def __init__(
        self,
        dest: str | os.PathLike[str],
        files: Iterable[FileEntry],
        commit: Commit,
        *,
        start_chunk: int = 0,
        archive: ArchiveCheck | None = None,
        depth: int = 8,
    ) -> None:
        self._queue: queue.Queue[bytes | _End | None] = queue.Queue(maxsize=depth)
        self._result: Extracted | None = None
        self._error: BaseException | None = None
        args = (dest, list(files), commit, start_chunk, archive)
        self._thread = threading.Thread(target=self._run, args=args, name="tree-extract")
        self._thread.start()

    def _run(
        self,
        dest: str | os.PathLike[str],
        files: list[FileEntry],
        commit: Commit,
        start_chunk: int,
        archive: ArchiveCheck | None,
    ) -> None:
        try:
            self._result = extract_payload(
                self._pieces(), dest, files, commit, start_chunk=start_chunk, archive=archive
            )
        except BaseException as exc:  # handed to the writing thread, never lost
            self._error = exc

    def _pieces(self) -> Iterator[bytes]:
        while (piece := self._queue.get()) is not None:
            if isinstance(piece, _End):
                return
            yield piece
        raise Aborted("the decryption stopped before the end of the archive")

    def _put(self, item: bytes | _End | None) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if self._error is not None:
            raise self._error

    def write(self, data: bytes | memoryview, /) -> int:
        if self._error is not None:
            raise self._error
        if len(data):
            self._put(bytes(data))
        return len(data)

    def close(self) -> Extracted:
        """Mark the end of the archive; what was extracted, or the extractor's error."""
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def abort(self) -> None:
        """Stop the extraction as a dropped connection would: resumable, nothing unverified named."""
        self._put(None)
        self._thread.join()
