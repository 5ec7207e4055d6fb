"""The object-store contract, run against every backend (local, S3 in-process, S3 over HTTP)."""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.storage import (
    CHUNK,
    MAX_PART_SIZE,
    DigestMismatch,
    InvalidKey,
    InvalidPart,
    NotFound,
    ObjectStore,
    PartTooLarge,
    StorageError,
    StoredPart,
    TruncatedBody,
    UploadNotFound,
    make_store,
)
from tests.storage.conftest import MIB, Backend

KEY = "artifacts/up_contract.age"
PART = 5 * MIB  # S3's smallest part but the last
ONLY = 2 * MIB + 5  # a lone (so last) part: any size; more than a read chunk


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(
    store: ObjectStore,
    handle: str,
    number: int,
    data: bytes,
    *,
    digest: str | None = None,
    stream: io.BytesIO | None = None,
    key: str = KEY,
) -> StoredPart:
    return store.put_part(
        key,
        handle,
        number,
        (number - 1) * PART,
        len(data),
        stream or io.BytesIO(data),
        digest or sha(data),
    )


def read_all(store: ObjectStore, key: str = KEY, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open_read(key, start, end))


def test_parts_sent_in_any_order_assemble_in_number_order(store: ObjectStore) -> None:
    parts = [blob(PART, 1), blob(PART, 2), blob(123_457, 3)]
    handle = store.begin_upload(KEY)
    stored = {n: put(store, handle, n, parts[n - 1]) for n in (3, 1, 2)}

    assert [(p.number, p.size) for p in store.stored_parts(KEY, handle)] == [
        (1, PART),
        (2, PART),
        (3, 123_457),
    ]
    assert stored[1].sha256 == sha(parts[0]) and stored[1].size == PART
    assert not store.exists(KEY)

    store.complete_upload(KEY, handle, list(stored.values()), 2 * PART + 123_457)

    assert read_all(store) == b"".join(parts)
    assert store.size(KEY) == 2 * PART + 123_457
    assert store.exists(KEY)


def test_sending_a_part_again_replaces_it(store: ObjectStore) -> None:
    first, second, tail = blob(PART, 10), blob(PART, 11), blob(1000, 12)
    handle = store.begin_upload(KEY)
    put(store, handle, 1, first)
    last = put(store, handle, 2, tail)
    replaced = put(store, handle, 1, second, digest=sha(second).upper())

    assert replaced.sha256 == sha(second)
    store.complete_upload(KEY, handle, [replaced, last], PART + 1000)
    assert read_all(store) == second + tail


def test_digest_mismatch_keeps_nothing_and_harms_the_stored_part_not(store: ObjectStore) -> None:
    good, tail = blob(PART, 20), blob(777, 21)
    handle = store.begin_upload(KEY)
    kept = put(store, handle, 1, good)
    last = put(store, handle, 2, tail)
    before = store.stored_parts(KEY, handle)

    wrong = blob(PART, 22)
    with pytest.raises(DigestMismatch) as refused:
        put(store, handle, 1, wrong, digest=sha(good))
    assert refused.value.actual == sha(wrong) and refused.value.expected == sha(good)

    assert store.stored_parts(KEY, handle) == before
    store.complete_upload(KEY, handle, [kept, last], PART + 777)
    assert read_all(store) == good + tail


def test_refused_new_part_is_not_stored(store: ObjectStore) -> None:
    data = blob(ONLY, 30)
    handle = store.begin_upload(KEY)
    with pytest.raises(DigestMismatch):
        put(store, handle, 1, data, digest=sha(b"something else"))
    assert store.stored_parts(KEY, handle) == []

    part = put(store, handle, 1, data)
    store.complete_upload(KEY, handle, [part], ONLY)
    assert read_all(store) == data


def test_truncated_body_keeps_nothing_and_harms_nothing(store: ObjectStore) -> None:
    good = blob(ONLY, 40)
    handle = store.begin_upload(KEY)
    kept = put(store, handle, 1, good)
    other = blob(ONLY, 41)

    with pytest.raises(TruncatedBody) as refused:
        put(store, handle, 1, other, stream=io.BytesIO(other[: ONLY - 1]))
    assert (refused.value.expected, refused.value.received) == (ONLY, ONLY - 1)
    with pytest.raises(TruncatedBody):
        put(store, handle, 2, other, stream=io.BytesIO(other[:1000]))

    with pytest.raises(TruncatedBody) as cut:
        put(store, handle, 1, other, stream=Disconnecting(other))  # type: ignore[arg-type]
    assert isinstance(cut.value.__cause__, ConnectionResetError)

    assert [p.number for p in store.stored_parts(KEY, handle)] == [1]
    store.complete_upload(KEY, handle, [kept], ONLY)
    assert read_all(store) == good


class Disconnecting(io.RawIOBase):
    """A request body whose client goes away after the first MiB."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        if self.inner.tell() >= MIB:
            raise ConnectionResetError("client went away")
        return self.inner.read(n)


class Unreadable(io.RawIOBase):
    def read(self, n: int = -1) -> bytes:
        raise AssertionError("the body was read although the part had to be refused first")


def test_bad_part_requests_are_refused_before_reading(store: ObjectStore) -> None:
    handle = store.begin_upload(KEY)
    with pytest.raises(PartTooLarge):
        store.put_part(KEY, handle, 1, 0, MAX_PART_SIZE + 1, Unreadable(), "0" * 64)  # type: ignore[arg-type]
    for number in (0, 10_001):
        with pytest.raises(InvalidPart):
            store.put_part(KEY, handle, number, 0, 10, Unreadable(), "0" * 64)  # type: ignore[arg-type]
    with pytest.raises(InvalidPart):
        store.put_part(KEY, handle, 1, 0, 10, Unreadable(), "not-a-digest")  # type: ignore[arg-type]


def test_complete_refuses_parts_the_store_does_not_hold(store: ObjectStore) -> None:
    data = blob(PART, 50)
    handle = store.begin_upload(KEY)
    part = put(store, handle, 1, data)

    with pytest.raises(InvalidPart):
        store.complete_upload(KEY, handle, [part], PART + 1)
    ghost = StoredPart(2, 10, sha(b"ghost"), '"00000000000000000000000000000000"')
    with pytest.raises(InvalidPart):
        store.complete_upload(KEY, handle, [part, ghost], PART + 10)
    assert not store.exists(KEY)

    store.complete_upload(KEY, handle, [part], PART)
    assert read_all(store) == data


def test_ranged_reads_stream_bounded_chunks(store: ObjectStore) -> None:
    data = blob(2 * MIB + 333, 60)
    handle = store.begin_upload(KEY)
    store.complete_upload(KEY, handle, [put(store, handle, 1, data)], len(data))
    size = len(data)

    chunks = list(store.open_read(KEY))
    assert b"".join(chunks) == data and max(len(c) for c in chunks) <= CHUNK and len(chunks) >= 3
    for start, end in [(0, 1), (10, 20), (CHUNK - 1, CHUNK + 1), (size - 5, None), (7, size)]:
        assert read_all(store, KEY, start, end) == data[start:end]
    assert read_all(store, KEY, size - 5, size + 100) == data[size - 5 :]
    assert read_all(store, KEY, size, None) == b""
    assert read_all(store, KEY, 7, 7) == b""
    assert store.read_prefix(KEY, 5) == data[:5]
    assert store.read_prefix(KEY, size + 10) == data


def test_a_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        store.open_read("artifacts/missing.age")
    with pytest.raises(FileNotFoundError):
        store.size("artifacts/missing.age")
    with pytest.raises(NotFound):
        store.read_prefix("artifacts/missing.age", 10)
    assert not store.exists("artifacts/missing.age")
    assert store.delete("artifacts/missing.age") is False


def test_delete_removes_the_object_and_every_version(backend: Backend) -> None:
    store = backend.store
    data = blob(3000, 70)
    handle = store.begin_upload(KEY)
    store.complete_upload(KEY, handle, [put(store, handle, 1, data)], len(data))
    if backend.client is not None:  # a second version, as an overwrite would leave
        backend.client.put_object(
            Bucket=backend.settings.bucket, Key=backend.full_key(KEY), Body=b"v2"
        )

    assert store.delete(KEY) is True

    assert not store.exists(KEY)
    with pytest.raises(NotFound):
        store.open_read(KEY)
    if backend.client is not None:
        left = backend.client.list_object_versions(
            Bucket=backend.settings.bucket, Prefix=backend.full_key(KEY)
        )
        assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
    else:
        assert list((backend.settings.root / "objects").rglob("*.age")) == []


def test_abort_discards_the_upload(backend: Backend) -> None:
    store = backend.store
    handle = store.begin_upload(KEY)
    put(store, handle, 1, blob(1000, 80))

    store.abort_upload(KEY, handle)

    with pytest.raises(UploadNotFound):
        store.stored_parts(KEY, handle)
    assert not store.exists(KEY)
    store.abort_upload(KEY, handle)  # again: not an error
    if backend.client is not None:
        assert (
            backend.client.list_multipart_uploads(Bucket=backend.settings.bucket).get("Uploads", [])
            == []
        )
    else:
        assert list((backend.settings.root / "staging").iterdir()) == []


def test_cleanup_aborts_only_uploads_older_than_the_cutoff(store: ObjectStore) -> None:
    stale = [store.begin_upload(f"artifacts/stale-{i}.age") for i in range(2)]
    put(store, stale[0], 1, blob(1000, 90), key="artifacts/stale-0.age")
    # moto reports every multipart upload as begun on 2010-11-10, so "too recent" here means
    # after 2000; test_local.py checks a cutoff an hour ago against real times.
    assert store.cleanup_stale_uploads(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert len(store.stored_parts("artifacts/stale-0.age", stale[0])) == 1

    later = datetime.now(UTC) + timedelta(minutes=1)
    assert store.cleanup_stale_uploads(later.replace(tzinfo=None)) == 2  # naive means UTC
    for i, handle in enumerate(stale):
        with pytest.raises(UploadNotFound):
            store.stored_parts(f"artifacts/stale-{i}.age", handle)
    assert store.cleanup_stale_uploads(later) == 0


def test_presigned_url_serves_the_object(backend: Backend) -> None:
    store = backend.store
    data = blob(4096, 100)
    handle = store.begin_upload(KEY)
    store.complete_upload(KEY, handle, [put(store, handle, 1, data)], len(data))

    url = store.presign_get(KEY, 300)

    if backend.client is None:
        assert url is None  # the gateway signs its own download URLs
    else:
        assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
        assert backend.fetch(url) == data


def test_check_writable_leaves_nothing_behind(backend: Backend) -> None:
    backend.store.check_writable()
    if backend.client is not None:
        left = backend.client.list_object_versions(Bucket=backend.settings.bucket)
        assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
    else:
        assert [p for p in backend.settings.root.rglob("*") if p.is_file()] == []


def test_check_writable_fails_on_an_unusable_store(backend: Backend, tmp_path: Path) -> None:
    if backend.client is None:
        blocker = tmp_path / "a-file"
        blocker.write_bytes(b"")
        broken = make_store(replace(backend.settings, root=blocker / "store"))
    else:
        broken = make_store(
            replace(backend.settings, bucket=f"missing-{uuid.uuid4().hex[:12]}"),
            session=backend.session,
        )
    with pytest.raises(StorageError):
        broken.check_writable()


BAD_KEYS = ["../escape.age", "/abs.age", "a//b.age", "", "a/./b", "a/b/", "sp ace", "a/../../b"]


def test_keys_must_be_relative_paths_of_safe_segments(store: ObjectStore) -> None:
    for key in BAD_KEYS:
        with pytest.raises(InvalidKey):
            store.begin_upload(key)
        with pytest.raises(InvalidKey):
            store.exists(key)
