"""``gateway pull``: download an artifact, decrypt it, prove it is the lab's, then keep it.

The age file is decrypted as it arrives, chunk by chunk: ChaCha20-Poly1305 authenticates
every 64 KiB chunk before its plaintext is written to ``FILE.part`` (mode 0600, beside
the output). Only when the whole stream decrypted, its size and commitment equal the
manifest's (version 2: an HMAC keyed by the file key just unwrapped; version 1: SHA-256;
:func:`gateway.manifest.check_plaintext`), and the manifest's signature verifies under
the lab's pinned key (:mod:`gateway.client.trust`), is ``FILE.part`` renamed to ``FILE``; otherwise it is
deleted. So plaintext never sits at the output name unverified.

Resume: a dropped connection is retried with ``Range`` from the first chunk not yet
written; a pull started again after the process died keeps the whole chunks already
in ``FILE.part`` (re-hashing them) and asks for the rest the same way. The age header
is fetched again each time: the gateway makes it once per grant, so it is the same.

``--raw`` keeps the age file itself (``FILE.part`` then ``FILE``, resumable the same
way) for the standard ``age`` program.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
import urllib3
from cryptography.exceptions import InvalidTag

from gateway import manifest as manifests
from gateway.age.stream import CHUNK, TAG
from gateway.client import agehdr, humane
from gateway.client.agehdr import Identities
from gateway.client.errors import PullError, WriteFailed
from gateway.client.http import Api, ApiError, with_retries
from gateway.client.progress import Meter
from gateway.client.sealing import NONCE, SEALED_CHUNK, Payload, chunk_count, plaintext_size

HEADER_PROBE = 64 * 1024
BATCH = 16
RING = 4
WRITEBACK_CHUNKS = 512  # 32 MiB of plaintext
COPY_BLOCK = 1 << 20
ATTEMPTS = 8
Sleep = Callable[[float], None]
Digest = Callable[[bytes], manifests.Hasher]
"""What hashes the plaintext, given the file key (:func:`gateway.manifest.plaintext_digest`)."""


@dataclass
class Opened:
    file_key: bytes
    header_len: int
    nonce: bytes
    total: int  # size of the age file


def part_path(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def _content(api: Api, artifact: str, start: int, end: int | None = None) -> requests.Response:
    rng = f"bytes={start}-" + ("" if end is None else str(end))
    return api.request(
        "GET",
        f"/v1/artifacts/{artifact}/content",
        ok=(200, 206),
        headers={"Range": rng},
        stream=True,
    )


LENGTH = re.compile(r"[0-9]{1,19}")
CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})")
NO_LENGTH = "the gateway sent no usable length"


def _total(response: requests.Response) -> int:
    """The age file's size: ``Content-Range``'s complete length, else ``Content-Length``.

    Both are parsed strictly (ASCII digits, a range inside its length); anything else,
    ``*`` or a missing header included, is PullError, never a ValueError.
    """
    content_range = response.headers.get("Content-Range")
    if content_range is not None:
        matched = CONTENT_RANGE.fullmatch(content_range)
        if matched is None:
            raise PullError(NO_LENGTH)
        first, last, total = (int(g) for g in matched.groups())
        if not first <= last < total:
            raise PullError(NO_LENGTH)
        return total
    length = response.headers.get("Content-Length")
    if length is None or not LENGTH.fullmatch(length):
        raise PullError(NO_LENGTH)
    return int(length)


def whole(value: object, what: str) -> int:
    """A non-negative JSON integer the gateway sent as ``what``; PullError for anything else."""
    if type(value) is not int or value < 0:
        raise PullError(f"the gateway sent no usable {what}")
    return value


def open_file(api: Api, artifact: str, identities: Identities) -> tuple[Opened, requests.Response]:
    """Start the download: read the age header and nonce, unwrap the file key with one of
    ``identities``; the response, left at the first payload chunk."""
    response = _content(api, artifact, 0)
    try:
        total = _total(response)
        file_key, header_len = agehdr.open_header(response.raw, identities, HEADER_PROBE)
        nonce = response.raw.read(NONCE)
    except BaseException:
        response.close()
        raise
    if len(nonce) != NONCE:
        response.close()
        raise PullError("the age file ends before its payload nonce")
    return Opened(file_key, header_len, nonce, total), response


def _read_exact(raw: Any, n: int) -> bytes:
    data = bytes(raw.read(n))
    if len(data) != n:
        raise ApiError("the connection ended early", status=0)
    return data


class Decrypting:
    """Writes the plaintext of chunks ``done..`` into ``sink``, fetching with Range.

    A dropped connection is retried (at most :data:`ATTEMPTS` requests in all) after
    ``sleep(delay)`` with exponential backoff from ``backoff`` seconds.
    """

    def __init__(
        self,
        api: Api,
        artifact: str,
        opened: Opened,
        sink: BinaryIO,
        digest: Any,
        advance: Callable[[int], None],
        first: requests.Response | None = None,
        *,
        backoff: float = 0.5,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.first = first  # a response already positioned at chunk 0, used once
        self.backoff, self.sleep = backoff, sleep
        self.api, self.artifact, self.opened = api, artifact, opened
        self.sink, self.digest, self.advance = sink, digest, advance
        self.payload = Payload(opened.file_key, opened.nonce)
        self.size = plaintext_size(opened.total - opened.header_len)
        self.chunks = chunk_count(self.size)
        self.done = 0  # chunks read and opened
        self.done_written = 0  # chunks written to the sink
        self.note: Callable[[str], None] = lambda message: None

    def run(self) -> None:
        with_retries(
            self._once,
            attempts=ATTEMPTS,
            base=self.backoff,
            sleep=self.sleep,
            on_retry=self._rewind,
        )

    def _rewind(self, exc: ApiError, delay: float) -> None:
        self.done = self.done_written  # ask again for what was not written
        self.note(f"{exc.detail}; trying again in {delay:.1f} s")

    def _once(self) -> None:
        if self.done >= self.chunks:
            return
        start = self.opened.header_len + NONCE + self.done * SEALED_CHUNK
        response, self.first = self.first, None
        if response is not None and self.done:
            response.close()
            response = None
        if response is None:
            response = _content(self.api, self.artifact, start)
        try:
            if _total(response) != self.opened.total:
                raise PullError("the artifact changed size between requests")
            self._pump(response.raw)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"download interrupted: {exc}", status=0) from None
        finally:
            response.close()

    def _pump(self, raw: Any) -> None:
        """Open batches into a ring of buffers; write and hash each on its own thread, in order.

        Leaving the executors waits for every batch handed over, so on any error what was
        written and what was hashed are the same ``done_written`` chunks.
        """
        ring = [bytearray(BATCH * CHUNK) for _ in range(RING)]
        busy: list[list[Future[Any]]] = [[] for _ in range(RING)]
        with (
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
            ThreadPoolExecutor(1, thread_name_prefix="sha256") as hasher,
        ):
            turn = 0
            while self.done < self.chunks:
                for job in busy[turn]:
                    job.result()
                view, count = self._batch(raw, memoryview(ring[turn]))
                busy[turn] = [
                    writer.submit(self._write, view, count),
                    hasher.submit(self.digest.update, view),
                ]
                turn = (turn + 1) % RING
            for jobs in busy:
                for job in jobs:
                    job.result()

    def _write(self, plain: memoryview, count: int) -> None:
        try:
            self.sink.write(plain)
        except OSError as exc:
            raise WriteFailed(str(getattr(self.sink, "name", "the output")), exc) from None
        self.done_written += count
        self.advance(len(plain))
        if self.done_written % WRITEBACK_CHUNKS < count:
            _start_writeback(self.sink)

    def _batch(self, raw: Any, out: memoryview) -> tuple[memoryview, int]:
        """Read and open up to ``BATCH`` chunks into ``out``; the plaintext view and how many."""
        first = self.done
        count = min(BATCH, self.chunks - first)
        last_len = (self.size - (self.chunks - 1) * CHUNK) + TAG
        lengths = [
            last_len if i == self.chunks - 1 else SEALED_CHUNK for i in range(first, first + count)
        ]
        data = memoryview(_read_exact(raw, sum(lengths)))
        offset = written = 0
        for i, length in zip(range(first, first + count), lengths, strict=True):
            try:
                self.payload.open_into(
                    i,
                    data[offset : offset + length],
                    i == self.chunks - 1,
                    out[written : written + length - TAG],
                )
            except InvalidTag:
                raise PullError(
                    f"chunk {i} of the age file does not authenticate: not the lab's ciphertext"
                ) from None
            offset += length
            written += length - TAG
        self.done += count
        return out[:written], count


def _start_writeback(sink: BinaryIO) -> None:
    """Ask the kernel to start writing what is written so far (the final fsync then waits less)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    try:
        sink.flush()
        advise(sink.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
        pass


def _write_block(sink: BinaryIO, block: bytes, partial: Path, *, sync: bool = False) -> None:
    """Write ``block`` (and with ``sync``, flush and fsync): a local failure is not retried."""
    try:
        sink.write(block)
        if sync:
            sink.flush()
            os.fsync(sink.fileno())
    except OSError as exc:
        raise WriteFailed(str(partial), exc) from None


def _keep_whole_chunks(path: Path, size: int, digest: Any) -> int:
    """Truncate a partial plaintext to whole chunks, hash them; how many there are."""
    have = path.stat().st_size if path.exists() else 0
    chunks = min(have // CHUNK, max(chunk_count(size) - 1, 0))
    keep = chunks * CHUNK
    with open(path, "r+b" if path.exists() else "w+b") as fh:
        fh.truncate(keep)
        while fh.tell() < keep:
            digest.update(fh.read(min(COPY_BLOCK, keep - fh.tell())))
    return chunks


def _private(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def decrypt_to(
    api: Api,
    artifact: str,
    identities: Identities,
    partial: Path,
    progress: bool | None,
    label: str,
    *,
    digest_for: Digest = lambda file_key: hashlib.sha256(),
    sleep: Sleep = time.sleep,
) -> tuple[int, str]:
    """Decrypt the artifact into ``partial`` (resuming it); its plaintext size and hex
    digest by ``digest_for`` (SHA-256 unless told). ``sleep`` waits between retries.
    """
    opened, first = open_file(api, artifact, identities)
    digest = digest_for(opened.file_key)
    _private(partial)
    size = plaintext_size(opened.total - opened.header_len)
    done = _keep_whole_chunks(partial, size, digest)
    with open(partial, "r+b") as sink, Meter(label, size, enabled=progress) as meter:
        if done:
            meter.note(
                f"resuming: {partial} already holds {humane.size(done * CHUNK)} of {humane.size(size)}"
            )
        sink.seek(done * CHUNK)
        meter.advance(done * CHUNK)
        job = Decrypting(api, artifact, opened, sink, digest, meter.advance, first, sleep=sleep)
        job.done = job.done_written = done
        job.note = meter.note
        job.run()
        try:
            sink.truncate()
            sink.flush()
            os.fsync(sink.fileno())
        except OSError as exc:
            raise WriteFailed(str(partial), exc) from None
    return size, digest.hexdigest()


def decrypt_stream(
    api: Api,
    artifact: str,
    identities: Identities,
    sink: BinaryIO,
    *,
    digest_for: Digest = lambda file_key: hashlib.sha256(),
    sleep: Sleep = time.sleep,
) -> tuple[int, str]:
    """Decrypt the artifact into ``sink`` without a partial file; its plaintext size and
    hex digest by ``digest_for`` (SHA-256 unless told)."""
    opened, first = open_file(api, artifact, identities)
    digest = digest_for(opened.file_key)
    job = Decrypting(api, artifact, opened, sink, digest, lambda n: None, first, sleep=sleep)
    job.run()
    return job.size, digest.hexdigest()


def digest_for(manifest: dict[str, Any]) -> Digest:
    """What hashes the plaintext of ``manifest``'s artifact; PullError if this client cannot."""
    try:
        return manifests.plaintext_digest(manifest)
    except manifests.ManifestError as exc:
        raise PullError(f"cannot check this artifact: {exc}") from None


def check_plaintext(manifest: dict[str, Any], size: int, digest: str) -> None:
    """PullError unless the decrypted plaintext's size and digest are the signed manifest's."""
    try:
        manifests.check_plaintext(manifest, size, digest)
    except manifests.ManifestError as exc:
        raise PullError(str(exc)) from None


def download_raw(
    api: Api,
    artifact: str,
    partial: Path,
    progress: bool | None,
    label: str,
    *,
    sleep: Sleep = time.sleep,
) -> int:
    """Fetch the age file itself into ``partial``, resuming from its length; the total size.

    A resumed request starts one byte before the end of what is kept, so even a complete
    partial file gets a 206 (never a 416) and tells the total size. ``sleep`` waits
    between retries of a dropped connection.
    """
    _private(partial)

    def once() -> int:
        have = partial.stat().st_size
        start = max(have - 1, 0)
        response = _content(api, artifact, start)
        try:
            total = _total(response)
            with open(partial, "r+b") as sink, Meter(label, total, enabled=progress) as meter:
                resumed = response.status_code == 206 and have > 0
                sink.seek(have if resumed else 0)
                sink.truncate()
                if resumed:
                    meter.note(
                        f"resuming: {partial} already holds {humane.size(have)} of {humane.size(total)}"
                    )
                    _read_exact(response.raw, have - start)
                meter.advance(sink.tell())
                while block := response.raw.read(COPY_BLOCK):
                    _write_block(sink, block, partial)
                    meter.advance(len(block))
                    if sink.tell() % (WRITEBACK_CHUNKS * CHUNK) < len(block):
                        _start_writeback(sink)
                _write_block(sink, b"", partial, sync=True)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(f"download interrupted: {exc}", status=0) from None
        finally:
            response.close()
        if partial.stat().st_size != total:
            raise ApiError("the connection ended early", status=0)
        return total

    return with_retries(once, attempts=ATTEMPTS, sleep=sleep)
