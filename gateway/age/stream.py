"""The age payload: STREAM over ChaCha20-Poly1305 in 64 KiB chunks (C2SP age, "Payload").

Design note. ``payload key = HKDF-SHA-256(ikm = file key, salt = nonce, info = "payload")``;
chunk ``i`` is sealed under :func:`chunk_nonce` ``(i, final)``, with the sizes of
:mod:`._shape`. The final chunk may be short but is empty only when the whole plaintext
is. Unsealing refuses a stream without a final chunk (truncation), a chunk out of place
(reordering changes its nonce), data after the final chunk, an empty final chunk after
others, and any altered bit (the AEAD tag). It releases the plaintext of every chunk that
authenticated before the error, exactly as the reference implementation does (the test
vectors' ``payload`` hashes depend on it).

Every entry point can start at a chunk other than 0 (``start_chunk``): its source then
begins with that chunk, and the output is exactly that part of the whole stream's, which
is what lets a transfer resume mid-file.

Chunks go in batches of ``BATCH`` (1 MiB of plaintext), each a job on the worker pool of
:mod:`._pool`, from the inputs of :mod:`._inputs`; each job seals or unseals its chunks with
``encrypt_into`` / ``decrypt_into`` (which release the GIL) into its slot's output buffer.
To seal a regular file, a job reads its batch straight into the output buffer, a 16-byte
gap left after each chunk for its tag, and seals each chunk there in place (OpenSSL
supports exactly overlapping input and output, and a test pins it), so the plaintext is
copied once, by the kernel. Memory is a few MiB whatever the size. This module never
opens a file.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.age._inputs import ChunkViews, FileInput, Layouts, ReadInto, StreamInput, slices
from gateway.age._pool import Batch, Pool, run_ring
from gateway.age._shape import (
    CHUNK,
    FILE_KEY_SIZE,
    NONCE_SIZE,
    SEALED,
    TAG,
    chunk_count,
    chunk_nonce,
    chunk_nonces,
    payload_size,
    plaintext_size,
    sealed_offset,
    sealed_size,
)
from gateway.age.errors import PayloadError, UsageError

__all__ = [
    "BATCH",
    "CHUNK",
    "FILE_KEY_SIZE",
    "NONCE_SIZE",
    "SEALED",
    "TAG",
    "ReadInto",
    "chunk_count",
    "chunk_nonce",
    "chunk_nonces",
    "unseal_chunk",
    "payload_key",
    "payload_size",
    "plaintext_size",
    "seal",
    "seal_chunk",
    "seal_file",
    "sealed_offset",
    "sealed_size",
    "unseal",
    "unseal_file",
]

BATCH = 16

Pieces = Generator[memoryview, None, None]


def payload_key(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)
    return ChaCha20Poly1305(key)


def seal_chunk(aead: ChaCha20Poly1305, index: int, chunk: bytes | memoryview, last: bool) -> bytes:
    """Chunk ``index`` of a STREAM, sealed: its plaintext and then its tag."""
    return aead.encrypt(chunk_nonce(index, last), chunk, None)


def unseal_chunk(
    aead: ChaCha20Poly1305, index: int, sealed: bytes | memoryview, last: bool, out: memoryview
) -> None:
    """Open chunk ``index`` into ``out`` (at least its plaintext's length); InvalidTag if bad.

    A chunk shorter than a tag, or an empty one anywhere but as the whole stream, is
    refused as forged, whatever its tag says.
    """
    _unseal_chunk(aead, chunk_nonce(index, last), index, sealed, last, out)


def _unseal_chunk(
    aead: ChaCha20Poly1305,
    nonce: bytes,
    index: int,
    sealed: bytes | memoryview,
    last: bool,
    out: memoryview,
) -> None:
    if len(sealed) < TAG or (len(sealed) == TAG and (index > 0 or not last)):
        raise InvalidTag
    aead.decrypt_into(nonce, sealed, None, out[: len(sealed) - TAG])


def _check_start(start_chunk: int) -> int:
    if type(start_chunk) is not int or start_chunk < 0:
        raise UsageError("start_chunk must be a chunk index (an integer of at least 0)")
    return start_chunk


class SealShape(NamedTuple):
    final: bool  #: the batch holds the final chunk
    size: int  #: plaintext bytes in the batch
    chunks: int


def _seal_shape(available: int, index: int) -> SealShape:
    if available > BATCH * CHUNK:
        return SealShape(False, BATCH * CHUNK, BATCH)
    if available == 0 and index > 0:
        raise UsageError(f"nothing to seal from chunk {index}: a resumed stream needs its data")
    return SealShape(True, available, chunk_count(available))


def _seal_views(data: memoryview, stride: int, out: memoryview, shape: SealShape) -> ChunkViews:
    plain = slices(data, stride, shape.size, shape.chunks, CHUNK)
    sealed = [out[i * SEALED : i * SEALED + len(p) + TAG] for i, p in enumerate(plain)]
    return ChunkViews(plain, sealed)


def _seal_batch(
    aead: ChaCha20Poly1305,
    views: ChunkViews,
    out: memoryview,
    index: int,
    shape: SealShape,
    load: Callable[[], None] | None = None,
) -> Batch:
    """The job sealing each chunk's plaintext view into its sealed view (a tag after it)."""
    plain, sealed = views
    nonces, seal_into = chunk_nonces(index, shape.chunks, shape.final), aead.encrypt_into

    def job() -> None:
        if load is not None:
            load()
        for nonce, chunk, into in zip(nonces, plain, sealed, strict=True):
            seal_into(nonce, chunk, None, into)

    whole = (out[: shape.size + shape.chunks * TAG],)
    return Batch(job, shape.chunks, shape.final, lambda _: whole)


def seal(
    src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None, *, start_chunk: int = 0
) -> Pieces:
    """Encrypt everything ``src`` holds; yields views of the ciphertext, valid until the next one.

    With ``start_chunk``, ``src`` holds the plaintext from that chunk on (at least a byte).
    """
    pool, layouts = Pool(threads), Layouts()
    inp = StreamInput(src, BATCH * CHUNK, pool.slots)

    def plan(slot: int, out: memoryview, index: int) -> Batch:
        got = inp.next_batch(slot)
        shape = _seal_shape(got.available, index)
        views = layouts.views(
            slot, shape.size == BATCH * CHUNK, lambda: _seal_views(got.data, CHUNK, out, shape)
        )
        return _seal_batch(aead, views, out, index, shape)

    return run_ring(pool, plan, BATCH * SEALED, _check_start(start_chunk))


def seal_file(
    fd: int,
    offset: int,
    size: int,
    aead: ChaCha20Poly1305,
    threads: int | None = None,
    *,
    start_chunk: int = 0,
) -> Pieces:
    """Encrypt ``size`` bytes of the regular file ``fd`` from ``offset``, as ``seal``.

    A file that shrinks below ``offset + size`` while it is read raises AgeError.
    """
    inp, layouts = FileInput(fd, offset, size, BATCH * CHUNK), Layouts()

    def plan(slot: int, out: memoryview, index: int) -> Batch:
        at = inp.next_batch()
        shape = _seal_shape(at.available, index)
        views = layouts.views(  # the plaintext is read into place in ``out``, gaps for tags
            slot, shape.size == BATCH * CHUNK, lambda: _seal_views(out, SEALED, out, shape)
        )
        return _seal_batch(
            aead, views, out, index, shape, lambda: inp.read(views.inputs, at.position, shape.size)
        )

    return run_ring(Pool(threads), plan, BATCH * SEALED, _check_start(start_chunk))


class UnsealShape(NamedTuple):
    final: bool  #: the batch holds the final chunk
    size: int  #: ciphertext bytes in the batch
    lengths: list[int]  #: of each sealed chunk


def _unseal_shape(available: int) -> UnsealShape:
    final = available <= BATCH * SEALED
    size = available if final else BATCH * SEALED
    if size == 0:
        raise PayloadError("the payload is truncated: it has no chunk")
    count = -(-size // SEALED)
    return UnsealShape(final, size, [min(SEALED, size - i * SEALED) for i in range(count)])


def _unseal_views(data: memoryview, out: memoryview, shape: UnsealShape) -> ChunkViews:
    count = len(shape.lengths)
    outputs = [out[i * CHUNK :] for i in range(count)]
    return ChunkViews(slices(data, SEALED, shape.size, count, SEALED), outputs)


def _unseal_batch(
    aead: ChaCha20Poly1305,
    views: ChunkViews,
    out: memoryview,
    index: int,
    shape: UnsealShape,
    load: Callable[[], None] | None = None,
) -> Batch:
    """The job opening each sealed chunk view into its plaintext view in ``out``.

    Its result is None, or the position in the batch of the first chunk that failed.
    """
    sealed, plain = views
    count = len(sealed)
    nonces = chunk_nonces(index, count, shape.final)
    last = [shape.final and i == count - 1 for i in range(count)]

    def job() -> int | None:
        if load is not None:
            load()
        for i in range(count):
            try:
                _unseal_chunk(aead, nonces[i], index + i, sealed[i], last[i], plain[i])
            except InvalidTag:
                return i
        return None

    def deliver(bad: int | None) -> Iterator[memoryview]:
        if bad is not None:
            if bad:
                yield out[: bad * CHUNK]
            yield from _diagnose(aead, sealed[bad], out, index + bad, last[bad])
        yield out[: shape.size - count * TAG]

    return Batch(job, count, shape.final, deliver)


def unseal(
    src: ReadInto, aead: ChaCha20Poly1305, threads: int | None = None, *, start_chunk: int = 0
) -> Pieces:
    """Decrypt and authenticate the STREAM in ``src``; yields views of the plaintext.

    On a bad stream, yields the plaintext of the chunks that authenticated first, then
    raises PayloadError. With ``start_chunk``, ``src`` holds the stream from that chunk on.
    """
    pool, layouts = Pool(threads), Layouts()
    inp = StreamInput(src, BATCH * SEALED, pool.slots)

    def plan(slot: int, out: memoryview, index: int) -> Batch:
        got = inp.next_batch(slot)
        shape = _unseal_shape(got.available)
        full = shape.size == BATCH * SEALED
        views = layouts.views(slot, full, lambda: _unseal_views(got.data, out, shape))
        return _unseal_batch(aead, views, out, index, shape)

    return run_ring(pool, plan, BATCH * CHUNK, _check_start(start_chunk))


def unseal_file(
    fd: int,
    offset: int,
    size: int,
    aead: ChaCha20Poly1305,
    threads: int | None = None,
    *,
    start_chunk: int = 0,
) -> Pieces:
    """Decrypt the ``size`` bytes of STREAM at ``offset`` in the regular file ``fd``, as ``unseal``."""
    pool, layouts = Pool(threads), Layouts()
    inp = FileInput(fd, offset, size, BATCH * SEALED)
    bufs = [memoryview(bytearray(BATCH * SEALED)) for _ in range(pool.slots)]

    def plan(slot: int, out: memoryview, index: int) -> Batch:
        at = inp.next_batch()
        shape, data = _unseal_shape(at.available), bufs[slot]
        full = shape.size == BATCH * SEALED
        views = layouts.views(slot, full, lambda: _unseal_views(data, out, shape))

        def load() -> None:
            inp.read([data[: shape.size]], at.position, shape.size)

        return _unseal_batch(aead, views, out, index, shape, load)

    return run_ring(pool, plan, BATCH * CHUNK, _check_start(start_chunk))


def _diagnose(
    aead: ChaCha20Poly1305, sealed: memoryview, out: memoryview, index: int, last: bool
) -> Generator[memoryview, None, None]:
    """Explain a chunk that failed; a full chunk with the other final flag is released first."""
    if len(sealed) < TAG:
        raise PayloadError(f"chunk {index} is truncated")
    if len(sealed) == TAG and index > 0:
        raise PayloadError("the final chunk is empty, which only an empty file may have")
    if len(sealed) == SEALED:
        try:
            aead.decrypt_into(chunk_nonce(index, not last), sealed, None, out[:CHUNK])
        except InvalidTag:
            pass
        else:
            yield out[:CHUNK]
            if last:
                raise PayloadError("the payload is truncated: it has no final chunk")
            raise PayloadError("data follows the final chunk")
    raise PayloadError(f"chunk {index} does not authenticate: the payload was altered or truncated")
