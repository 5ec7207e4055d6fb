"""Parts stream through the store in bounded reads, whatever their size.

Run against ``local`` and against S3 over real HTTP: that is where botocore could buffer
the body (to sign its payload, to compute a checksum, to be able to retry). moto
in-process is left out on purpose: there moto itself is the server and reads each
request body into memory, which says nothing about the gateway's side.
"""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from gateway import storage
from gateway.storage import CHUNK, HashingReader
from tests.storage.conftest import MIB, Backend

KEY = "artifacts/up_stream.age"


class RecordingStream(io.RawIOBase):
    """A request body that remembers the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self.inner, self.sizes = io.BytesIO(data), []  # type: ignore[var-annotated]

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.sizes.append(n)
        return self.inner.read(n)


@pytest.mark.parametrize("backend", ["local", "s3-server"], indirect=True)
def test_a_part_is_read_in_bounded_pieces(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    original = HashingReader.read

    def recording_read(self: HashingReader, n: int = -1) -> bytes:
        asked.append(n)
        return original(self, n)

    monkeypatch.setattr(storage.HashingReader, "read", recording_read)
    data = random.Random(7).randbytes(6 * MIB)
    body = RecordingStream(data)
    store = backend.store
    handle = store.begin_upload(KEY)

    part = store.put_part(KEY, handle, 1, 0, len(data), body, hashlib.sha256(data).hexdigest())  # type: ignore[arg-type]

    assert asked and all(0 < n <= CHUNK for n in asked), f"the transport asked for {max(asked)} bytes at once"
    assert body.sizes and all(0 < n <= CHUNK for n in body.sizes)
    store.complete_upload(KEY, handle, [part], len(data))
    assert b"".join(store.open_read(KEY)) == data
