"""Transfers end when their grant ends: the check and the entry are one step; streams re-check.

A download's ``content.download`` entry is committed in the transaction that re-reads the
grant and the artifact, so no ``ok`` download can follow its grant's revocation in the log.
A response streams in windows of ``access.recheck_bytes`` bytes or ``access.recheck_seconds``
seconds and is cut (a truncated body and a ``content.cut`` entry) once either has ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from flask.testing import FlaskClient

from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.runtime import Runtime
from gateway.services import content as contents
from gateway.storage import CHUNK
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals, make_config
from tests.services.conftest import Evaluator, Shared, approve, entries

MIB = 1 << 20
WINDOW = 1 * MIB


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Windows of 1 MiB, and a time bound long enough not to fire unless a test waits for it."""
    return make_config(tmp_path, **{"access.recheck_bytes": WINDOW, "access.recheck_seconds": 60})


@pytest.fixture
def large(lab: Lab) -> Shared:
    """An artifact of several windows."""
    plaintext = helpers.random_bytes(7 * MIB, seed=7)
    return Shared(lab.push(plaintext), plaintext)


@pytest.fixture
def large_grant(lab: Lab, evaluator: Evaluator, large: Shared) -> dict[str, Any]:
    r = approve(lab, evaluator.request(large.artifact)["id"])
    assert r.status_code == 201, r.get_json()
    return dict(r.get_json())


class Stream:
    """A response read chunk by chunk, as a slow client would."""

    def __init__(self, client: FlaskClient, path: str, headers: dict[str, str]) -> None:
        self.response = client.get(path, headers=headers, buffered=False)
        assert self.response.status_code in (200, 206), self.response.get_json()
        self.length = int(self.response.headers["Content-Length"])
        self._chunks: Iterator[bytes] = iter(self.response.response)
        self.received = 0
        self.cut = False

    def read(self, at_least: int) -> int:
        """Read until ``at_least`` more bytes came, or the body ended; how many came."""
        got = 0
        while got < at_least and not self.cut:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            except contents.TransferCut:
                self.cut = True
                break
            got += len(chunk)
        self.received += got
        return got

    def rest(self) -> int:
        return self.read(1 << 40)

    def close(self) -> None:
        self.response.close()


def content_stream(evaluator: Evaluator, shared: Shared) -> Stream:
    return Stream(
        evaluator.client, f"/v1/artifacts/{shared.artifact['id']}/content", evaluator.auth
    )


def downloads_after(client: FlaskClient, principals: Principals, action: str, grant: str) -> list:
    """``content.download`` entries with outcome ok logged after ``action`` on ``grant``."""
    log = [e for e in entries(client, principals) if e["grant"] == grant]
    ended = next(i for i, e in enumerate(log) if e["action"] == action)
    return [e for e in log[ended:] if e["action"] == "content.download" and e["outcome"] == "ok"]


def test_a_revocation_between_release_and_entry_refuses_the_download(
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    principals: Principals,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lab revokes right after the key was released: nothing is sent, nothing logged as ok."""
    release = contents.release

    def released_then_revoked(*args: Any) -> bytes:
        header = release(*args)
        r = lab.client.delete(f"/v1/grants/{granted['id']}", headers=lab.auth)
        assert r.status_code == 204
        return header

    monkeypatch.setattr(contents, "release", released_then_revoked)
    r = evaluator.content(shared.artifact)
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert "revoked" in r.get_json()["detail"]
    assert downloads_after(lab.client, principals, "grant.revoke", granted["id"]) == []


def test_a_withdrawal_between_release_and_entry_refuses_the_download(
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    principals: Principals,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = contents.release

    def released_then_withdrawn(*args: Any) -> bytes:
        header = release(*args)
        r = lab.client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth)
        assert r.status_code in (202, 204)
        return header

    monkeypatch.setattr(contents, "release", released_then_withdrawn)
    r = evaluator.content(shared.artifact)
    assert r.status_code == 410 and r.mimetype == "application/problem+json"
    assert downloads_after(lab.client, principals, "grant.revoke", granted["id"]) == []


def test_a_revocation_cuts_a_download_in_flight(
    lab: Lab, evaluator: Evaluator, large: Shared, large_grant: dict, principals: Principals
) -> None:
    stream = content_stream(evaluator, large)
    stream.read(2 * MIB)
    assert lab.client.delete(f"/v1/grants/{large_grant['id']}", headers=lab.auth).status_code == 204
    after = stream.rest()
    stream.close()
    assert stream.cut and stream.received < stream.length
    assert after <= WINDOW + CHUNK
    cut = entries(lab.client, principals, action="content.cut")
    assert len(cut) == 1 and cut[0]["grant"] == large_grant["id"]
    assert cut[0]["outcome"] == "denied" and cut[0]["details"]["reason"] == "grant revoked"
    assert cut[0]["details"]["sent"] == stream.received
    assert downloads_after(lab.client, principals, "grant.revoke", large_grant["id"]) == []


def test_a_withdrawal_cuts_a_download_in_flight(
    lab: Lab,
    evaluator: Evaluator,
    large: Shared,
    large_grant: dict,
    principals: Principals,
    rt: Runtime,
) -> None:
    """The local store's open file keeps serving an unlinked object: the re-check ends it."""
    stream = content_stream(evaluator, large)
    stream.read(2 * MIB)
    r = lab.client.delete(f"/v1/artifacts/{large.artifact['id']}", headers=lab.auth)
    assert r.status_code == 204
    assert not rt.store.exists(helpers.object_key(rt, large.artifact["id"]))
    after = stream.rest()
    stream.close()
    assert stream.cut and after <= WINDOW + CHUNK
    cut = entries(lab.client, principals, action="content.cut")
    assert [c["details"]["reason"] for c in cut] == ["artifact withdrawn"]


def test_the_end_of_a_grant_cuts_a_download_in_flight(
    lab: Lab, evaluator: Evaluator, large: Shared, clock: FrozenClock, principals: Principals
) -> None:
    approve(lab, evaluator.request(large.artifact, duration_hours=1)["id"])
    stream = content_stream(evaluator, large)
    stream.read(2 * MIB)
    clock.advance(hours=1)
    after = stream.rest()
    stream.close()
    assert stream.cut and after <= WINDOW + CHUNK
    cut = entries(lab.client, principals, action="content.cut")
    assert [c["details"]["reason"] for c in cut] == ["grant expired"]


def test_a_slow_reader_is_cut_within_the_time_bound(
    tmp_path: Path,
    lab: Lab,
    evaluator: Evaluator,
    large: Shared,
    large_grant: dict,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that reads one chunk and stalls never reaches the next byte window: time does."""
    timed = rt.config.replace(**{"access.recheck_bytes": 1 << 30, "access.recheck_seconds": 1})
    monkeypatch.setattr(rt, "config", timed)
    stream = content_stream(evaluator, large)
    stream.read(1)
    assert lab.client.delete(f"/v1/grants/{large_grant['id']}", headers=lab.auth).status_code == 204
    time.sleep(1.1)
    after = stream.rest()
    stream.close()
    assert stream.cut and after <= CHUNK


def test_a_download_that_ends_before_any_revocation_is_whole(
    evaluator: Evaluator, large: Shared, large_grant: dict, principals: Principals
) -> None:
    stream = content_stream(evaluator, large)
    assert stream.rest() == stream.length and not stream.cut
    stream.close()
    assert entries(evaluator.client, principals, action="content.cut") == []


def path_of(url: str) -> str:
    u = urlparse(url)
    return f"{u.path}?{u.query}"


def test_a_revocation_cuts_a_signed_url_download_in_flight(
    client: FlaskClient,
    lab: Lab,
    evaluator: Evaluator,
    large: Shared,
    large_grant: dict,
    principals: Principals,
) -> None:
    issued = evaluator.url(large.artifact).get_json()
    stream = Stream(client, path_of(issued["url"]), {})
    stream.read(2 * MIB)
    assert lab.client.delete(f"/v1/grants/{large_grant['id']}", headers=lab.auth).status_code == 204
    after = stream.rest()
    stream.close()
    assert stream.cut and after <= WINDOW + CHUNK
    cut = entries(lab.client, principals, action="content.cut")
    assert len(cut) == 1 and cut[0]["details"]["via"] == "url"


def test_revoking_the_grantees_tokens_ends_its_urls_and_transfers(
    client: FlaskClient,
    evaluator: Evaluator,
    large: Shared,
    large_grant: dict,
    principals: Principals,
    rt: Runtime,
) -> None:
    """A stolen evaluator token is revoked: URLs issued with it and streams in flight stop."""
    from gateway.services import identity

    issued = evaluator.url(large.artifact).get_json()
    stream = content_stream(evaluator, large)
    stream.read(2 * MIB)
    with rt.db.session() as session:
        assert identity.revoke_tokens(session, org="agency-a", name="eval", now=rt.now()) == 1
    after = stream.rest()
    stream.close()
    assert stream.cut and after <= WINDOW + CHUNK
    r = client.get(path_of(issued["url"]))
    assert r.status_code == 403 and "token" in r.get_json()["detail"]
    cut = entries(client, principals, action="content.cut")
    assert [c["details"]["reason"] for c in cut] == ["grantee has no valid token"]


def test_a_store_that_cannot_open_the_object_logs_no_download(
    evaluator: Evaluator,
    large: Shared,
    large_grant: dict,
    principals: Principals,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store fails (an outage, cannot be caused locally): 503, and no entry for bytes never sent."""
    from gateway.storage import StorageError

    assert evaluator.content(large.artifact, "bytes=0-9").status_code == 206
    before = entries(evaluator.client, principals, action="content.download")

    def down(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        raise StorageError("S3: 503 SlowDown")

    monkeypatch.setattr(rt.store, "open_read", down)
    r = evaluator.content(large.artifact)
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert entries(evaluator.client, principals, action="content.download") == before


def test_a_store_failing_mid_stream_cuts_the_transfer_and_says_how_far_it_got(
    evaluator: Evaluator,
    large: Shared,
    large_grant: dict,
    principals: Principals,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.storage import StorageError

    open_read = rt.store.open_read

    def breaks(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        chunks = open_read(*args, **kwargs)

        def failing() -> Iterator[bytes]:
            yield next(chunks)
            yield next(chunks)
            raise StorageError("connection reset by the store")

        return failing()

    evaluator.content(large.artifact, "bytes=0-0")  # the key is released first
    monkeypatch.setattr(rt.store, "open_read", breaks)
    stream = content_stream(evaluator, large)
    stream.rest()
    stream.close()
    assert stream.cut and stream.received < stream.length
    cut = entries(evaluator.client, principals, action="content.cut")
    assert [(c["details"]["reason"], c["details"]["sent"]) for c in cut] == [
        ("object store failed", stream.received)
    ]
