"""Encrypt-as-you-read part uploads: order, digests, bounded buffers, retries on faults."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from gateway.client.http import Api, ApiError
from gateway.client.parts import FileChanged, PartSender, Sealed, ciphertext, send_parts
from gateway.client.sealing import (
    CHUNK,
    SEALED_CHUNK,
    Payload,
    chunk_count,
    payload_size,
    plaintext_size,
)
from tests.client.fakeserver import PartStore, serving

PREFIX = b"age-encryption.org/v1\n--- header stand-in\n"


def _decrypt(data: bytes, key: bytes, nonce: bytes, size: int) -> bytes:
    payload = Payload(key, nonce)
    body = data[len(PREFIX) + 16 :]
    n = chunk_count(size)
    out = [
        payload.open(i, body[i * SEALED_CHUNK : (i + 1) * SEALED_CHUNK], i == n - 1)
        for i in range(n)
    ]
    return b"".join(out)


def _push(
    plain: bytes,
    store: PartStore,
    part_size: int,
    jobs: int = 2,
    existing: dict[int, tuple[int, str]] | None = None,
) -> tuple[list[bytes], bytes, Sealed, list[int]]:
    key, nonce = os.urandom(16), os.urandom(16)
    sealed = Sealed()
    moved: list[int] = []
    with serving(store) as url:
        api = Api(url, "gw_test")
        sender = PartSender(api, "u1", existing or {}, moved.append, backoff=0.01)
        pieces = ciphertext(
            io.BytesIO(plain), Payload(key, nonce), PREFIX + nonce, len(plain), sealed
        )
        digests = send_parts(pieces, part_size, sender, jobs)
    data = b"".join(store.parts[n] for n in sorted(store.parts))
    assert _decrypt(data, key, nonce, len(plain)) == plain
    return digests, data, sealed, moved


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 5 * CHUNK - 3])
def test_sizes_and_chunk_boundaries(size: int) -> None:
    plain = os.urandom(size)
    store = PartStore()
    digests, data, sealed, _ = _push(plain, store, part_size=100_000)
    assert len(data) == len(PREFIX) + payload_size(size)
    assert plaintext_size(payload_size(size)) == size
    assert sealed.size == size and sealed.plaintext.hexdigest() == hashlib.sha256(plain).hexdigest()
    assert digests == [hashlib.sha256(store.parts[n]).digest() for n in sorted(store.parts)]
    assert all(len(store.parts[n]) == 100_000 for n in sorted(store.parts)[:-1])


def test_a_part_that_fails_once_is_sent_again() -> None:
    plain = os.urandom(6 * CHUNK)
    store = PartStore(faults={2: ["503"], 3: ["drop"], 4: ["503", "503"]})
    _, _, _, moved = _push(plain, store, part_size=100_000, jobs=3)
    assert store.attempts[2] == 2 and store.attempts[3] == 2 and store.attempts[4] == 3
    assert sum(moved) == len(PREFIX) + payload_size(len(plain))  # progress undoes a failed attempt


def test_a_refusal_is_not_retried_and_stops_the_push() -> None:
    plain = os.urandom(20 * CHUNK)
    store = PartStore(faults={2: ["403"]})
    with pytest.raises(ApiError, match="upload u1 is not yours") as info:
        _push(plain, store, part_size=100_000, jobs=2)
    assert info.value.status == 403 and store.attempts[2] == 1
    assert len(store.parts) < 14  # the reader stopped instead of sending the rest
    # ... and was closed then, its hashing thread gone, not left to the garbage collector
    assert not [t for t in threading.enumerate() if t.name.startswith("sha256")]


def test_parts_already_held_are_not_sent_again() -> None:
    plain = os.urandom(4 * CHUNK)
    key, nonce = os.urandom(16), os.urandom(16)

    def cut() -> list[bytes]:
        out = b"".join(
            bytes(p)
            for p in ciphertext(
                io.BytesIO(plain), Payload(key, nonce), PREFIX + nonce, len(plain), Sealed()
            )
        )
        return [out[i : i + 100_000] for i in range(0, len(out), 100_000)]

    parts = cut()
    assert parts == cut()  # same key and nonce: the same ciphertext, which is what resuming needs
    held = {
        1: (len(parts[0]), hashlib.sha256(parts[0]).hexdigest()),
        2: (len(parts[1]), "0" * 64),
    }  # part 2 differs: must be replaced
    store = PartStore()
    with serving(store) as url:
        sender = PartSender(Api(url, "t"), "u1", held, lambda n: None, backoff=0.01)
        pieces = ciphertext(
            io.BytesIO(plain), Payload(key, nonce), PREFIX + nonce, len(plain), Sealed()
        )
        send_parts(pieces, 100_000, sender, 2)
    assert sorted(store.parts) == list(range(2, len(parts) + 1))


def test_a_file_that_changes_while_read_is_refused() -> None:
    with pytest.raises(FileChanged):
        list(
            ciphertext(
                io.BytesIO(b"x" * 10), Payload(os.urandom(16), os.urandom(16)), b"", 11, Sealed()
            )
        )
    with pytest.raises(FileChanged):
        list(
            ciphertext(
                io.BytesIO(b"x" * 12), Payload(os.urandom(16), os.urandom(16)), b"", 11, Sealed()
            )
        )


def test_a_part_that_fails_for_good_starts_no_further_part() -> None:
    """With one part in flight, the failing part's freed buffer must not carry the next one:
    a stopped gateway is then retried for one part, not for every part in turn."""
    plain = os.urandom(20 * CHUNK)
    store = PartStore(faults={2: ["503"] * 6})
    with pytest.raises(ApiError, match="try later"):
        _push(plain, store, part_size=100_000, jobs=1)
    assert store.attempts[2] == 6
    assert sorted(store.attempts) == [1, 2], store.attempts
