"""A push or pull resumed mid-file seals and opens exactly the rest of the whole file's payload."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.exceptions import InvalidTag

from gateway import age
from gateway.client.sealing import (
    CHUNK,
    SEALED_CHUNK,
    TAG,
    Payload,
    chunk_count,
    payload_size,
    sealed_offset,
)

BATCH = 16  # chunks per batch of the age module: resuming at and around it matters
KEY, NONCE = os.urandom(16), os.urandom(16)
SIZE = 2 * BATCH * CHUNK + 3 * CHUNK + 5


def _plain() -> bytes:
    return bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256)


def _chunk_by_chunk(payload: Payload, plain: bytes) -> bytes:
    """The payload as a caller that places each chunk itself writes it (nonce first)."""
    n = chunk_count(len(plain))
    return payload.nonce + b"".join(
        payload.seal(i, plain[i * CHUNK : (i + 1) * CHUNK], i == n - 1) for i in range(n)
    )


@pytest.mark.parametrize("start", [0, 1, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH, 2 * BATCH + 3])
@pytest.mark.parametrize("threads", [0, 2])
def test_seal_from_a_chunk_is_the_rest_of_the_whole_payload(start: int, threads: int) -> None:
    plain, payload = _plain(), Payload(KEY, NONCE)
    whole = _chunk_by_chunk(payload, plain)
    assert len(whole) == payload_size(SIZE)
    rest = payload.seal_from(io.BytesIO(plain[start * CHUNK :]), start, threads)
    assert b"".join(bytes(p) for p in rest) == whole[sealed_offset(start) :]
    opened = payload.unseal_from(io.BytesIO(whole[sealed_offset(start) :]), start, threads)
    assert b"".join(bytes(p) for p in opened) == plain[start * CHUNK :]


def test_the_payload_opens_with_the_age_program_s_format() -> None:
    """A whole payload sealed from chunk 0 behind a real header decrypts with gateway.age."""
    plain, payload = _plain(), Payload(KEY, NONCE)
    identity = age.X25519Identity.generate()
    header = age.wrap_file_key(KEY, [identity.to_recipient()])
    body = b"".join(bytes(p) for p in payload.seal_from(io.BytesIO(plain)))
    out = io.BytesIO()
    age.decrypt(io.BytesIO(header + NONCE + body), out, [identity])
    assert out.getvalue() == plain


def test_chunks_opened_one_by_one_follow_the_stream_rules() -> None:
    payload = Payload(KEY, NONCE)
    sealed = payload.seal(0, b"x" * CHUNK, False)
    assert len(sealed) == SEALED_CHUNK
    assert payload.open(0, sealed, False) == b"x" * CHUNK
    out = memoryview(bytearray(CHUNK))
    payload.open_into(0, sealed, False, out)
    assert bytes(out) == b"x" * CHUNK
    with pytest.raises(InvalidTag):
        payload.open(1, sealed, False)  # another index is another nonce
    with pytest.raises(InvalidTag):
        payload.open(0, sealed, True)  # and so is the other final flag
    empty = payload.seal(3, b"", True)
    assert len(empty) == TAG
    with pytest.raises(InvalidTag):
        payload.open(3, empty, True)  # an empty final chunk only ends an empty file
    assert payload.open(0, payload.seal(0, b"", True), True) == b""
