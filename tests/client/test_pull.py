"""Pull: decrypt as it arrives, resume with Range after a drop or from a partial file."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
from pathlib import Path

import pytest

from gateway import age
from gateway import manifest as manifests
from gateway.age.stream import CHUNK
from gateway.client.errors import PullError
from gateway.client.http import Api
from gateway.client.pull import check_plaintext, decrypt_to, download_raw, part_path
from tests.client.fakeserver import ContentStore, serving_content


@pytest.fixture(scope="module")
def identity() -> age.X25519Identity:
    return age.X25519Identity.generate()


def _no_sleep(delay: float) -> None:
    """A dropped connection is retried at once: the tests time nothing."""


def _age_file(plain: bytes, identity: age.X25519Identity) -> bytes:
    out = io.BytesIO()
    age.encrypt(io.BytesIO(plain), out, [identity.to_recipient()])
    return out.getvalue()


def test_dropped_connections_resume_from_the_next_chunk(
    tmp_path: Path, identity: age.X25519Identity
) -> None:
    plain = os.urandom(60 * CHUNK + 123)
    store = ContentStore(_age_file(plain, identity), drop_after=[1_500_000, 1_700_000])
    out = part_path(tmp_path / "w.bin")
    slept: list[float] = []
    with serving_content(store) as url:
        size, sha = decrypt_to(
            Api(url, "t"), "a1", [identity], out, False, "test", sleep=slept.append
        )
    assert (size, sha) == (len(plain), hashlib.sha256(plain).hexdigest())
    assert len(slept) == 2, "one back-off before each of the two retries"
    assert out.read_bytes() == plain
    assert len(store.ranges) == 3 and all(r.startswith("bytes=") for r in store.ranges)
    starts = [int(r[6:].split("-")[0]) for r in store.ranges]
    assert starts[0] == 0 and starts[0] < starts[1] < starts[2], (
        "each retry asks only for what is missing"
    )


def test_a_partial_file_is_kept_and_completed(tmp_path: Path, identity: age.X25519Identity) -> None:
    plain = os.urandom(10 * CHUNK + 5)
    store = ContentStore(_age_file(plain, identity))
    out = tmp_path / "w.bin.part"
    out.write_bytes(plain[: 3 * CHUNK + 999])  # killed mid-chunk: the half chunk is dropped
    with serving_content(store) as url:
        size, sha = decrypt_to(Api(url, "t"), "a1", [identity], out, False, "test", sleep=_no_sleep)
    assert sha == hashlib.sha256(plain).hexdigest() and out.read_bytes() == plain
    assert (
        store.ranges[-1].startswith("bytes=")
        and int(store.ranges[-1][6:].split("-")[0]) > 3 * CHUNK
    )
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)


def test_a_tampered_chunk_stops_the_pull(tmp_path: Path, identity: age.X25519Identity) -> None:
    plain = os.urandom(4 * CHUNK)
    data = bytearray(_age_file(plain, identity))
    data[-CHUNK] ^= 1
    store = ContentStore(bytes(data))
    with serving_content(store) as url, pytest.raises(PullError, match="does not authenticate"):
        decrypt_to(Api(url, "t"), "a1", [identity], tmp_path / "w.part", False, "test")


def test_raw_download_resumes_and_a_complete_partial_needs_no_416(
    tmp_path: Path, identity: age.X25519Identity
) -> None:
    data = _age_file(os.urandom(30 * CHUNK), identity)
    partial = tmp_path / "w.age.part"
    partial.write_bytes(data[:123_456])
    store = ContentStore(data, drop_after=[400_000])
    slept: list[float] = []
    with serving_content(store) as url:
        api = Api(url, "t")
        assert download_raw(api, "a1", partial, False, "test", sleep=slept.append) == len(data)
        assert partial.read_bytes() == data and len(slept) == 1
        assert download_raw(api, "a1", partial, False, "test", sleep=_no_sleep) == len(data)
    assert partial.read_bytes() == data
    assert store.ranges[0] == "bytes=123455-" and store.ranges[-1] == f"bytes={len(data) - 1}-"


def test_a_resumed_pull_commits_to_the_whole_plaintext_under_the_file_key(
    tmp_path: Path, identity: age.X25519Identity
) -> None:
    plain = os.urandom(6 * CHUNK + 77)
    store = ContentStore(_age_file(plain, identity))
    out = tmp_path / "w.bin.part"
    out.write_bytes(plain[: 2 * CHUNK + 5])
    seen: list[bytes] = []

    def keyed(file_key: bytes) -> manifests.Hasher:
        seen.append(file_key)
        return manifests.plaintext_hasher(file_key)

    with serving_content(store) as url:
        size, digest = decrypt_to(
            Api(url, "t"), "a1", [identity], out, False, "test", digest_for=keyed, sleep=_no_sleep
        )
    [file_key] = seen
    key = manifests.derive_key(file_key, b"gateway manifest v2 plaintext")
    assert digest == hmac.new(key, plain, hashlib.sha256).hexdigest()
    signed = {"version": 2, "plaintext": {"size": len(plain), "commitment": digest}}
    check_plaintext(signed, size, digest)
    wrong = {"version": 2, "plaintext": {"size": len(plain), "commitment": "0" * 64}}
    with pytest.raises(PullError, match="keyed commitment differs"):
        check_plaintext(wrong, size, digest)


@pytest.mark.parametrize(
    "told", ["bytes 0-1/*", "bytes 0-1/\u00b2", "bytes 0-1/1e9", "bytes 5-1/9", "bytes 0-9/9", "x"]
)
def test_a_content_range_without_a_usable_length_is_a_pull_error(
    tmp_path: Path, identity: age.X25519Identity, told: str
) -> None:
    store = ContentStore(_age_file(b"weights", identity), content_range=told)
    with serving_content(store) as url:
        for pull in (
            lambda: decrypt_to(Api(url, "t"), "a1", [identity], tmp_path / "w.part", False, "t"),
            lambda: download_raw(Api(url, "t"), "a1", tmp_path / "r.part", False, "t"),
        ):
            with pytest.raises(PullError, match="^the gateway sent no usable length$"):
                pull()


@pytest.mark.parametrize(
    ("headers", "total"),
    [
        ({"Content-Range": "bytes 0-9/10", "Content-Length": "10"}, 10),
        ({"Content-Length": "77"}, 77),
        ({}, None),
        ({"Content-Length": "\u0663"}, None),
        ({"Content-Length": "-1"}, None),
        ({"Content-Length": "1" * 20}, None),
    ],
)
def test_the_length_is_read_strictly(headers: dict[str, str], total: int | None) -> None:
    import requests
    from requests.structures import CaseInsensitiveDict

    from gateway.client.pull import _total

    response = requests.Response()
    response.headers = CaseInsensitiveDict(headers)
    if total is None:
        with pytest.raises(PullError, match="no usable length"):
            _total(response)
    else:
        assert _total(response) == total
