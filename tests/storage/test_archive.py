"""The audit archive: names written once, on every backend; S3 objects under Object Lock."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from gateway.storage import InvalidKey, NotFound
from gateway.storage.archive import AlreadyPublished, AuditArchive, make_archive
from tests.storage.conftest import Backend


@pytest.fixture
def archive(backend: Backend) -> AuditArchive:
    return make_archive(backend.settings, session=backend.session)


def test_published_documents_are_listed_and_read_back(archive: AuditArchive) -> None:
    assert archive.list_names() == []
    archive.publish("checkpoint-00000002", b"two\n")
    archive.publish("checkpoint-00000001", b"one\n")

    assert archive.list_names() == ["checkpoint-00000001", "checkpoint-00000002"]
    assert archive.get("checkpoint-00000001") == b"one\n"
    with pytest.raises(NotFound):
        archive.get("checkpoint-00000003")


def test_a_name_is_written_once(archive: AuditArchive) -> None:
    archive.publish("checkpoint-7", b"original")
    archive.publish("checkpoint-7", b"original")  # a retry of the same bytes is fine

    with pytest.raises(AlreadyPublished):
        archive.publish("checkpoint-7", b"rewritten history")

    assert archive.get("checkpoint-7") == b"original"
    assert archive.list_names() == ["checkpoint-7"]


def test_names_are_plain(archive: AuditArchive) -> None:
    for name in ["", ".hidden", "../up", "a/../b", "a//b", "/abs", "a/", "a/.b", "sp ace"]:
        with pytest.raises(InvalidKey):
            archive.publish(name, b"x")
        with pytest.raises(InvalidKey):
            archive.get(name)
    assert archive.list_names() == []


def test_tile_paths_are_names_written_once(archive: AuditArchive) -> None:
    """C2SP tlog-tiles paths (``tile/<L>/<N>[.p/<W>]``) are archive names like any other."""
    archive.publish("tile/0/x001/234.p/5", b"t" * 160)
    archive.publish("tile/entries/000", b"bundle")
    archive.publish("checkpoint-1", b"cp")
    archive.publish("tile/0/x001/234.p/5", b"t" * 160)  # a retry: the same bytes
    with pytest.raises(AlreadyPublished):
        archive.publish("tile/0/x001/234.p/5", b"u" * 160)
    assert archive.list_names() == ["checkpoint-1", "tile/0/x001/234.p/5", "tile/entries/000"]
    assert archive.get("tile/0/x001/234.p/5") == b"t" * 160


def test_where_the_documents_live(backend: Backend, archive: AuditArchive) -> None:
    archive.publish("checkpoint-1", b"anchored")
    settings = backend.settings
    if backend.client is None:
        path = settings.audit_dir / "checkpoint-1"
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        assert sorted(p.name for p in settings.audit_dir.iterdir()) == [
            "checkpoint-1"
        ]  # no temporary left
        return
    key = settings.prefix + "checkpoint-1"
    head = backend.client.head_object(
        Bucket=settings.audit_bucket, Key=key
    )  # moto lacks GetObjectRetention
    assert head["ObjectLockMode"] == "COMPLIANCE"
    expected = datetime.now(UTC) + timedelta(days=settings.audit_retention_days)
    assert abs(head["ObjectLockRetainUntilDate"] - expected) < timedelta(minutes=5)
    version = head["VersionId"]
    with pytest.raises(ClientError):
        backend.client.delete_object(Bucket=settings.audit_bucket, Key=key, VersionId=version)
    assert archive.get("checkpoint-1") == b"anchored"
