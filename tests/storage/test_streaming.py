"""Parts stream through the store in bounded reads, whatever their size.

Run against ``local`` and against S3 over real HTTP: that is where botocore could buffer
the body (to sign its payload, to compute a checksum, to be able to retry). moto
in-process is left out on purpose: there moto itself is the server and reads each
request body into memory, which says nothing about the gateway's side.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
from pathlib import Path

import boto3
import pytest

from gateway import storage
from gateway.storage import CHUNK, HashingReader, StorageError, StorageSettings, make_store
from gateway.storage.provision import provision
from tests.storage.conftest import GATEWAY_ARN, MIB, Backend, make_backend, s3_context, s3_settings

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
def test_a_part_is_read_in_bounded_pieces(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
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

    assert asked and all(0 < n <= CHUNK for n in asked), (
        f"the transport asked for {max(asked)} bytes at once"
    )
    assert body.sizes and all(0 < n <= CHUNK for n in body.sizes)
    store.complete_upload(KEY, handle, [part], len(data))
    assert b"".join(store.open_read(KEY)) == data


@pytest.mark.parametrize("s3_kind", ["s3-inprocess", "s3-server"])
def test_s3_parts_carry_their_checksum_and_an_unsigned_streamed_payload(
    s3_kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aws_credentials: None,
    boto_session: boto3.session.Session,
) -> None:
    """S3 itself refuses a part whose bytes differ from x-amz-checksum-sha256; the body is not pre-hashed."""
    with s3_context(s3_kind, request) as endpoint:
        backend = make_backend(
            s3_kind,
            s3_settings(tmp_path, endpoint, gateway_principal_arn=GATEWAY_ARN),
            boto_session,
        )
        store = backend.store
        sent: list[dict[str, str]] = []
        store.part_client.meta.events.register(  # type: ignore[attr-defined]
            "before-send.s3.UploadPart",
            lambda request, **_: sent.append(
                {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
            ),
        )
        data = random.Random(8).randbytes(MIB)
        digest = hashlib.sha256(data).hexdigest()
        handle = store.begin_upload(KEY)
        store.put_part(KEY, handle, 1, 0, len(data), io.BytesIO(data), digest)

    [headers] = sent
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert headers["Content-Length"] == str(MIB) and "Transfer-Encoding" not in headers


def test_unknown_backends_are_refused(tmp_path: Path) -> None:
    settings = StorageSettings(backend="ftp", root=tmp_path)
    with pytest.raises(StorageError, match="unknown storage backend"):
        make_store(settings)
    with pytest.raises(StorageError, match="unknown storage backend"):
        provision(settings)
