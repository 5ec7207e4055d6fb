"""The age file's sizes and STREAM arithmetic, against files the age module really writes."""

from __future__ import annotations

import io

import pytest

from gateway import age
from gateway.age import stream
from tests.age.conftest import CHUNK, data, encrypt_bytes

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 16 * CHUNK, 16 * CHUNK + 1, 3 * CHUNK + 77]


@pytest.mark.parametrize("size", SIZES)
def test_payload_size_is_what_encryption_writes(size: int, identity: age.X25519Identity) -> None:
    sealed = encrypt_bytes(data(size, size), [identity.to_recipient()])
    header = age.read_header(io.BytesIO(sealed))
    payload = len(sealed) - len(header.raw)
    assert stream.payload_size(size) == payload
    assert stream.plaintext_size(payload) == size
    assert stream.sealed_size(size) == payload - stream.NONCE_SIZE
    assert stream.chunk_count(size) == max(1, -(-size // CHUNK))
    last = stream.chunk_count(size) - 1
    assert len(sealed) - len(header.raw) - stream.sealed_offset(last) == size - last * CHUNK + 16


@pytest.mark.parametrize(
    "payload",
    [0, 15, stream.NONCE_SIZE + 15, stream.NONCE_SIZE + stream.SEALED + 1],
    ids=["empty", "no-nonce", "short-tag", "inside-a-tag"],
)
def test_no_plaintext_size_for_a_payload_no_file_can_have(payload: int) -> None:
    with pytest.raises(ValueError):
        stream.plaintext_size(payload)


def test_chunk_nonce_is_the_counter_then_the_final_flag() -> None:
    assert stream.chunk_nonce(0, True) == bytes(11) + b"\x01"
    assert stream.chunk_nonce(0x0102, False) == bytes(9) + b"\x01\x02\x00"
    assert stream.chunk_nonce(2**88 - 1, True) == b"\xff" * 11 + b"\x01"
    with pytest.raises(OverflowError):
        stream.chunk_nonce(2**88, False)


@pytest.mark.parametrize("final", [False, True])
def test_a_batch_of_nonces_is_each_chunk_s_nonce(final: bool) -> None:
    for first, count in [(0, 1), (0, 16), (255, 3), (2**40 - 1, 16), (2**88 - 16, 16)]:
        nonces = stream.chunk_nonces(first, count, final)
        spec = [
            (first + i).to_bytes(11, "big") + bytes([final and i == count - 1])
            for i in range(count)
        ]
        assert nonces == spec
    assert stream.chunk_nonces(5, 0, True) == []
