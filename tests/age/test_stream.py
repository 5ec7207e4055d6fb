"""STREAM against a deliberately naive reference: one chunk at a time, no batches, no threads."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway import age
from gateway.age import stream
from tests.age.conftest import CHUNK, data

FILE_KEY, NONCE = bytes(range(16)), bytes(range(16, 32))
BATCH_BYTES = stream.BATCH * CHUNK


def naive_seal(plaintext: bytes) -> bytes:
    aead = stream.payload_key(FILE_KEY, NONCE)
    chunks = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    last = len(chunks) - 1
    return b"".join(
        aead.encrypt(i.to_bytes(11, "big") + bytes([i == last]), c, None)
        for i, c in enumerate(chunks)
    )


def _seal(plaintext: bytes, threads: int) -> bytes:
    aead = stream.payload_key(FILE_KEY, NONCE)
    return b"".join(bytes(p) for p in stream.seal(io.BytesIO(plaintext), aead, threads))


def _open(ciphertext: bytes, threads: int) -> tuple[bytes, Exception | None]:
    out = bytearray()
    try:
        for piece in stream.unseal(
            io.BytesIO(ciphertext), stream.payload_key(FILE_KEY, NONCE), threads
        ):
            out += piece
    except age.PayloadError as exc:
        return bytes(out), exc
    return bytes(out), None


def test_payload_key_is_hkdf_of_file_key_and_nonce() -> None:
    assert isinstance(stream.payload_key(FILE_KEY, NONCE), ChaCha20Poly1305)
    assert stream.chunk_nonce(1, False) == bytes(10) + b"\x01\x00"
    assert stream.chunk_nonce(258, True) == bytes(9) + b"\x01\x02\x01"


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        CHUNK,
        BATCH_BYTES - 1,
        BATCH_BYTES,
        BATCH_BYTES + 1,
        2 * BATCH_BYTES,
        2 * BATCH_BYTES + CHUNK + 1,
    ],
)
@pytest.mark.parametrize("threads", [0, 1, 3])
def test_seal_and_open_match_the_naive_reference(size: int, threads: int) -> None:
    plaintext = data(size, size)
    reference = naive_seal(plaintext)
    assert _seal(plaintext, threads) == reference
    assert _open(reference, threads) == (plaintext, None)


@pytest.mark.parametrize(
    "bad_chunk", [0, 5, stream.BATCH - 1, stream.BATCH, stream.BATCH + 3, 2 * stream.BATCH + 1]
)
@pytest.mark.parametrize("threads", [0, 2])
def test_open_releases_exactly_the_chunks_before_a_bad_one(bad_chunk: int, threads: int) -> None:
    plaintext = data(2 * BATCH_BYTES + 2 * CHUNK + 9, 3)
    sealed = bytearray(naive_seal(plaintext))
    sealed[bad_chunk * stream.SEALED + 100] ^= 0x40
    released, error = _open(bytes(sealed), threads)
    assert error is not None and f"chunk {bad_chunk}" in str(error)
    assert released == plaintext[: bad_chunk * CHUNK]


@pytest.mark.parametrize("chunks", [1, stream.BATCH, stream.BATCH + 1])
def test_a_stream_cut_at_a_chunk_boundary_is_truncated(chunks: int) -> None:
    plaintext = data((chunks + 1) * CHUNK, 4)
    sealed = naive_seal(plaintext)
    released, error = _open(sealed[: chunks * stream.SEALED], 2)
    assert error is not None and "truncated" in str(error)
    assert released == plaintext[: chunks * CHUNK]


def test_an_empty_final_chunk_after_full_ones_is_refused() -> None:
    aead = stream.payload_key(FILE_KEY, NONCE)
    plaintext = data(CHUNK, 5)
    sealed = aead.encrypt(stream.chunk_nonce(0, False), plaintext, None)
    sealed += aead.encrypt(stream.chunk_nonce(1, True), b"", None)
    released, error = _open(sealed, 0)
    assert error is not None and "empty" in str(error)
    assert released == plaintext


def test_encrypt_into_seals_in_place_as_the_file_path_relies_on() -> None:
    aead = stream.payload_key(FILE_KEY, NONCE)
    plaintext = data(CHUNK, 7)
    buf = bytearray(plaintext) + bytearray(stream.TAG)
    view = memoryview(buf)
    aead.encrypt_into(stream.chunk_nonce(3, True), view[:CHUNK], None, view)
    assert bytes(buf) == aead.encrypt(stream.chunk_nonce(3, True), plaintext, None)


def _seal_file(path: Path, offset: int, size: int, threads: int) -> bytes:
    aead = stream.payload_key(FILE_KEY, NONCE)
    with open(path, "rb") as fh:
        return b"".join(
            bytes(p) for p in stream.seal_file(fh.fileno(), offset, size, aead, threads)
        )


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        BATCH_BYTES - 1,
        BATCH_BYTES,
        BATCH_BYTES + 1,
        5 * BATCH_BYTES + 3 * CHUNK + 11,
    ],
)
@pytest.mark.parametrize("threads", [0, 1, 3])
def test_seal_file_matches_the_naive_reference(size: int, threads: int, tmp_path: Path) -> None:
    plaintext = data(size, size + 1)
    path = tmp_path / "plain"
    path.write_bytes(b"head" + plaintext + b"tail")
    assert _seal_file(path, 4, size, threads) == naive_seal(plaintext)


@pytest.mark.parametrize("threads", [0, 2])
def test_seal_file_refuses_a_file_that_shrinks_while_it_is_read(
    threads: int, tmp_path: Path
) -> None:
    path = tmp_path / "plain"
    path.write_bytes(data(10 * BATCH_BYTES, 8))
    aead = stream.payload_key(FILE_KEY, NONCE)
    with open(path, "rb") as fh:
        pieces = stream.seal_file(fh.fileno(), 0, 10 * BATCH_BYTES, aead, threads)
        next(pieces)
        os.truncate(path, BATCH_BYTES + 5)  # every batch not yet read now lies past the end
        with pytest.raises(age.AgeError, match="changed size"):
            for _ in pieces:
                pass


def _short_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every preadv return a third of its first buffer, as a FUSE or NFS mount may."""
    real = os.preadv

    def short(fd: int, buffers: list[memoryview], offset: int) -> int:
        first = memoryview(buffers[0])
        return real(fd, [first[: max(1, len(first) // 3)]], offset)

    monkeypatch.setattr(os, "preadv", short)


def test_seal_file_resumes_short_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A file system may return less than asked (FUSE, NFS): the rest is read, not refused."""
    plaintext = data(2 * BATCH_BYTES + 100, 9)
    path = tmp_path / "plain"
    path.write_bytes(plaintext)
    _short_reads(monkeypatch)
    assert _seal_file(path, 0, len(plaintext), 0) == naive_seal(plaintext)


def test_open_file_resumes_short_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plaintext = data(2 * BATCH_BYTES + 100, 10)
    path = tmp_path / "sealed"
    path.write_bytes(b"xx" + naive_seal(plaintext))
    _short_reads(monkeypatch)
    aead = stream.payload_key(FILE_KEY, NONCE)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size - 2
        opened = b"".join(bytes(p) for p in stream.unseal_file(fh.fileno(), 2, size, aead, 0))
    assert opened == plaintext


# A resumed transfer seals or opens from a chunk other than 0: its output must be exactly
# that part of the whole stream's, at every boundary where the batching could slip.
RESUME_SIZE = 3 * BATCH_BYTES + 5 * CHUNK + 77
RESUME_CHUNKS = -(-RESUME_SIZE // CHUNK)
RESUME_AT = [
    0,
    1,
    stream.BATCH - 1,
    stream.BATCH,
    stream.BATCH + 1,
    2 * stream.BATCH,
    RESUME_CHUNKS - 2,
    RESUME_CHUNKS - 1,
]


@pytest.mark.parametrize("start", RESUME_AT)
@pytest.mark.parametrize("threads", [0, 2])
def test_a_resumed_seal_is_the_rest_of_the_whole_seal(start: int, threads: int) -> None:
    plaintext = data(RESUME_SIZE, 11)
    whole = naive_seal(plaintext)
    aead = stream.payload_key(FILE_KEY, NONCE)
    rest = io.BytesIO(plaintext[start * CHUNK :])
    resumed = b"".join(bytes(p) for p in stream.seal(rest, aead, threads, start_chunk=start))
    assert resumed == whole[start * stream.SEALED :]


@pytest.mark.parametrize("start", RESUME_AT)
@pytest.mark.parametrize("threads", [0, 2])
def test_a_resumed_file_seal_is_the_rest_of_the_whole_seal(
    start: int, threads: int, tmp_path: Path
) -> None:
    plaintext = data(RESUME_SIZE, 12)
    path = tmp_path / "plain"
    path.write_bytes(plaintext)
    aead = stream.payload_key(FILE_KEY, NONCE)
    offset = start * CHUNK
    with open(path, "rb") as fh:
        pieces = stream.seal_file(
            fh.fileno(), offset, RESUME_SIZE - offset, aead, threads, start_chunk=start
        )
        resumed = b"".join(bytes(p) for p in pieces)
    assert resumed == naive_seal(plaintext)[start * stream.SEALED :]


@pytest.mark.parametrize("start", RESUME_AT)
@pytest.mark.parametrize("threads", [0, 2])
def test_a_resumed_open_gives_the_rest_of_the_plaintext(
    start: int, threads: int, tmp_path: Path
) -> None:
    plaintext = data(RESUME_SIZE, 13)
    rest = naive_seal(plaintext)[start * stream.SEALED :]
    aead = stream.payload_key(FILE_KEY, NONCE)
    opened = stream.unseal(io.BytesIO(rest), aead, threads, start_chunk=start)
    assert b"".join(bytes(p) for p in opened) == plaintext[start * CHUNK :]
    path = tmp_path / "sealed"
    path.write_bytes(b"x" + rest)
    with open(path, "rb") as fh:
        pieces = stream.unseal_file(fh.fileno(), 1, len(rest), aead, threads, start_chunk=start)
        assert b"".join(bytes(p) for p in pieces) == plaintext[start * CHUNK :]


def test_a_resumed_open_authenticates_each_chunk_at_its_own_index() -> None:
    """Chunks handed over under the wrong start index do not authenticate (no silent shift)."""
    plaintext = data(2 * BATCH_BYTES, 14)
    rest = naive_seal(plaintext)[stream.BATCH * stream.SEALED :]
    aead = stream.payload_key(FILE_KEY, NONCE)
    with pytest.raises(age.PayloadError, match=f"chunk {stream.BATCH - 1} does not"):
        for _ in stream.unseal(io.BytesIO(rest), aead, 0, start_chunk=stream.BATCH - 1):
            pass
    bad = bytearray(rest)
    bad[3 * stream.SEALED + 5] ^= 1
    released = bytearray()
    with pytest.raises(age.PayloadError, match=f"chunk {stream.BATCH + 3} does not"):
        for piece in stream.unseal(io.BytesIO(bytes(bad)), aead, 2, start_chunk=stream.BATCH):
            released += piece
    assert released == plaintext[BATCH_BYTES : BATCH_BYTES + 3 * CHUNK]


def test_a_resumed_seal_with_nothing_left_or_a_bad_start_is_refused() -> None:
    aead = stream.payload_key(FILE_KEY, NONCE)
    with pytest.raises(age.UsageError, match="nothing to seal from chunk 3"):
        next(stream.seal(io.BytesIO(b""), aead, 0, start_chunk=3))
    for start in (-1, 1.0, True):
        with pytest.raises(age.UsageError, match="start_chunk"):
            stream.seal(io.BytesIO(b"x"), aead, 0, start_chunk=start)  # type: ignore[arg-type]
    with pytest.raises(age.PayloadError, match="no chunk"):
        next(stream.unseal(io.BytesIO(b""), aead, 0, start_chunk=3))
