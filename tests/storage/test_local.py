"""What only the local backend can show: bytes on disk, locks, file times."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.storage import CHUNK, DigestMismatch, InvalidPart, UploadNotFound
from gateway.storage.local import LocalStore

KEY = "artifacts/up_local.age"
MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_a_refused_new_part_leaves_no_bytes_behind(store: LocalStore) -> None:
    handle = store.begin_upload(KEY)
    secret = os.urandom(3 * MIB)
    with pytest.raises(DigestMismatch):
        store.put_part(KEY, handle, 2, 3 * MIB, len(secret), io.BytesIO(secret), sha(b"other"))

    data = (store.staging / handle / "data").read_bytes()
    assert data.strip(b"\0") == b""  # the region written before the digest check is zero again
    assert store.stored_parts(KEY, handle) == []


def test_completion_moves_the_file_and_clears_staging(store: LocalStore) -> None:
    handle = store.begin_upload(KEY)
    data = os.urandom(MIB + 5)
    part = store.put_part(KEY, handle, 1, 0, len(data), io.BytesIO(data), sha(data))
    store.complete_upload(KEY, handle, [part], len(data))

    assert (store.objects / KEY).read_bytes() == data
    assert list(store.staging.iterdir()) == []
    with pytest.raises(UploadNotFound):
        store.complete_upload(KEY, handle, [part], len(data))


def test_a_handle_belongs_to_its_key(store: LocalStore) -> None:
    handle = store.begin_upload(KEY)
    with pytest.raises(UploadNotFound):
        store.put_part("artifacts/other.age", handle, 1, 0, 1, io.BytesIO(b"x"), sha(b"x"))
    for bad in ("../staging", "0" * 32, handle.upper()):
        with pytest.raises(UploadNotFound):
            store.stored_parts(KEY, bad)


class SlowStream(io.RawIOBase):
    """Hands out its first chunk, then waits for ``go`` before the rest."""

    def __init__(self, data: bytes, go: threading.Event, started: threading.Event) -> None:
        self.inner, self.go, self.started = io.BytesIO(data), go, started

    def read(self, n: int = -1) -> bytes:
        if self.inner.tell() > 0:
            self.started.set()
            assert self.go.wait(10)
        return self.inner.read(n)


def test_a_resend_during_a_first_write_never_mixes_bytes(store: LocalStore) -> None:
    handle = store.begin_upload(KEY)
    first, second = os.urandom(3 * CHUNK), os.urandom(3 * CHUNK)
    go, started = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def send(name: str, data: bytes, stream: io.RawIOBase) -> None:
        results[name] = store.put_part(KEY, handle, 1, 0, len(data), stream, sha(data))  # type: ignore[arg-type]

    writer = threading.Thread(target=send, args=("first", first, SlowStream(first, go, started)))
    writer.start()
    assert started.wait(10)  # the first writer holds the part's lock, mid-stream
    resend = threading.Thread(target=send, args=("second", second, io.BytesIO(second)))
    resend.start()
    time.sleep(0.2)  # the resend streams to its temporary file, then waits for the lock
    go.set()
    writer.join(10)
    resend.join(10)

    assert set(results) == {"first", "second"}
    [held] = store.stored_parts(KEY, handle)
    assert held.sha256 == sha(second)
    store.complete_upload(KEY, handle, [held], len(second))
    assert (store.objects / KEY).read_bytes() == second


def test_cleanup_goes_by_the_last_write(store: LocalStore) -> None:
    old, fresh = store.begin_upload("artifacts/old.age"), store.begin_upload("artifacts/fresh.age")
    long_ago = time.time() - 3 * 86400
    for path in [store.staging / old, *(store.staging / old).iterdir()]:
        os.utime(path, (long_ago, long_ago))

    assert store.cleanup_stale_uploads(datetime.now(UTC) - timedelta(days=1)) == 1

    assert sorted(p.name for p in store.staging.iterdir()) == [fresh]


def test_completing_again_after_a_crash_between_move_and_clean_up(store: LocalStore) -> None:
    handle = store.begin_upload(KEY)
    data = os.urandom(1000)
    part = store.put_part(KEY, handle, 1, 0, len(data), io.BytesIO(data), sha(data))
    (store.objects / KEY).parent.mkdir(parents=True)
    os.replace(
        store.staging / handle / "data", store.objects / KEY
    )  # the crash came right after this

    store.complete_upload(KEY, handle, [part], len(data))

    assert (store.objects / KEY).read_bytes() == data
    assert list(store.staging.iterdir()) == []


def test_a_part_may_not_overlap_its_stored_neighbours(store: LocalStore) -> None:
    handle = store.begin_upload(KEY)
    two = os.urandom(100)
    store.put_part(KEY, handle, 2, 100, len(two), io.BytesIO(two), sha(two))
    too_long = os.urandom(150)
    with pytest.raises(InvalidPart, match="overlap part 2"):
        store.put_part(KEY, handle, 1, 0, len(too_long), io.BytesIO(too_long), sha(too_long))
    with pytest.raises(InvalidPart, match="overlap part 2"):
        store.put_part(KEY, handle, 3, 150, len(two), io.BytesIO(two), sha(two))
    assert [p.number for p in store.stored_parts(KEY, handle)] == [2]
    assert (store.staging / handle / "data").read_bytes()[100:] == two
