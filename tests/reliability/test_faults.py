"""The fault matrix: every store call and every committing transaction of a flow fails once, in turn.

For each flow (upload, completion, content download, withdrawal, the sweep), on the local
store and on S3 (a moto server), a clean run counts the flow's calls at one seam; then the
flow runs again from the start once per call, that call failing. After each: every answer
is a success or a 4xx/503 problem+json; nothing acknowledged is lost; nothing half-stored
is visible; no key release or download happened without its entry; the log verifies and
extends the checkpoint taken before. Then the client's retry (and the sweeper) finish the
job, and the same holds again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from gateway.audit.store import Entry
from gateway.caller import Caller
from gateway.models import Artifact, CustodyKey, Grant, PendingDeletion, Upload, UploadPart
from gateway.services import completion, identity
from gateway.sweeper import sweep_once
from tests import helpers
from tests.reliability.faults import (
    Counter,
    Gateway,
    Prepared,
    Shared,
    assert_invariants,
    assert_refusal,
    build,
    checkpoint,
    complete,
    prepare_upload,
    shared_artifact,
    stored,
)
from tests.storage.conftest import aws_credentials, moto_server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
MIB = 1 << 20
KB = 1 << 10


@pytest.fixture(params=["local", "s3"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway per backend, kept in memory where the machine has a tmpfs.

    What the matrix tests is what each failure leaves behind, not the disk's speed: every
    commit and every part is still fsynced, only cheaply.
    """
    url = None
    if request.param == "s3":
        request.getfixturevalue("aws_credentials")
        url = request.getfixturevalue("moto_server")
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    gateway = build(root, request.param, url)
    try:
        yield gateway
    finally:
        gateway.close()
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)


SEAMS = ["store", "commit"]


def seam_of(gw: Gateway, seam: str) -> Counter:
    return gw.store if seam == "store" else gw.commits


Act = Callable[[Gateway, Any], list[Any]]


def run_matrix(
    gw: Gateway,
    seam: str,
    prepare: Callable[[Gateway], Any],
    act: Act,
    check: Callable[[Gateway, Any, list[Any]], None],
    recover: Callable[[Gateway, Any], None],
) -> int:
    """The flow clean once (counted), then once per call with that call failing; how many."""
    counter = seam_of(gw, seam)
    state = prepare(gw)
    counter.arm(None)
    act(gw, state)
    total = len(counter.calls)
    counter.disarm()
    recover(gw, state)
    assert total >= 1
    for n in range(1, total + 1):
        state = prepare(gw)
        before = checkpoint(gw)
        counter.arm(n)
        try:
            answers = act(gw, state)
        finally:
            failed = counter.failed
            counter.disarm()
        assert failed, f"call {n} of {total} was never made"
        for r in answers:
            assert_refusal(r)
        check(gw, state, answers)
        assert_invariants(gw, before)
        recover(gw, state)
        assert_invariants(gw, before)
    return total


# --- upload ------------------------------------------------------------------------------


@dataclass
class Uploading:
    plaintext: bytes
    upload: dict[str, Any] | None = None
    data: bytes = b""
    acked: dict[int, bool] = field(default_factory=dict)


def upload_act(gw: Gateway, state: Uploading) -> list[Any]:
    r = gw.client.post(
        "/v1/uploads",
        json={"name": f"m-{len(state.plaintext)}", "kind": "weights", "share_with": ["agency-a"]},
        headers=gw.lab.auth,
    )
    if r.status_code != 201:
        return [r]
    state.upload = r.get_json()
    state.data = helpers.age_file(state.upload["recipient"], state.plaintext)
    answers = [r]
    for n, part in enumerate(helpers.split(state.data, state.upload["part_size"]), start=1):
        answers.append(gw.lab.put(state.upload, n, part))
        state.acked[n] = answers[-1].status_code == 200
    return answers


def upload_check(gw: Gateway, state: Uploading, answers: list[Any]) -> None:
    if state.upload is None:
        return
    parts = helpers.split(state.data, state.upload["part_size"])
    listed = gw.client.get(f"/v1/uploads/{state.upload['id']}", headers=gw.lab.auth).get_json()
    shown = {p["number"]: (p["size"], p["sha256"]) for p in listed["parts"]}
    for n, part in enumerate(parts, start=1):
        if state.acked.get(n):
            assert shown.get(n) == (len(part), helpers.sha(part)), f"acknowledged part {n} lost"
        assert n not in shown or shown[n] == (len(part), helpers.sha(part)), f"part {n} half-stored"


def upload_recover(gw: Gateway, state: Uploading) -> None:
    if state.upload is None:
        assert upload_act(gw, state)[0].status_code == 201
    assert state.upload is not None
    for n, part in enumerate(helpers.split(state.data, state.upload["part_size"]), start=1):
        if not state.acked.get(n):
            assert gw.lab.put(state.upload, n, part).status_code == 200
    r = gw.lab.complete(state.upload, state.data, state.plaintext)
    assert r.status_code == 201, r.get_json()
    assert stored(gw, r.get_json()["id"]) == state.data


@pytest.mark.parametrize("seam", SEAMS)
def test_uploads_survive_every_fault(gw: Gateway, seam: str) -> None:
    sizes = iter(range(6 * MIB, 7 * MIB, 997))
    run_matrix(
        gw,
        seam,
        lambda gw: Uploading(helpers.random_bytes(next(sizes))),
        upload_act,
        upload_check,
        upload_recover,
    )


# --- completion --------------------------------------------------------------------------


def completion_check(gw: Gateway, state: Prepared, answers: list[Any]) -> None:
    r = answers[0]
    with gw.rt.db.session() as session:
        upload = session.get(Upload, state.upload["id"])
        assert upload is not None
        parts = session.query(UploadPart).filter_by(upload_id=upload.id).count()
    if r.status_code in (200, 201):
        assert upload.state == "completed" and stored(gw, r.get_json()["id"]) == state.data
        return
    assert upload.state in ("open", "completing") and parts == 2, "the parts were lost"


def completion_recover(gw: Gateway, state: Prepared) -> None:
    r = complete(gw, state)
    if r.status_code == 409:  # a claim left behind by the failure: stale after the timeout
        gw.clock.advance(seconds=gw.rt.config.uploads.completing_timeout_seconds)
        r = complete(gw, state)
    assert r.status_code in (200, 201), r.get_json()
    assert stored(gw, r.get_json()["id"]) == state.data


@pytest.mark.parametrize("seam", SEAMS)
def test_completion_survives_every_fault(gw: Gateway, seam: str) -> None:
    run_matrix(
        gw,
        seam,
        prepare_upload,
        lambda gw, state: [complete(gw, state)],
        completion_check,
        completion_recover,
    )


# --- content download --------------------------------------------------------------------


def downloads(gw: Gateway, grant: str) -> int:
    with gw.rt.db.session() as session:
        return (
            session.query(Entry)
            .filter(Entry.action == "content.download", Entry.grant == grant)
            .count()
        )


def download_check(gw: Gateway, state: Shared, answers: list[Any]) -> None:
    r = answers[0]
    if r.status_code == 200:
        assert gw.evaluator.decrypt(r.data) == state.plaintext
    assert downloads(gw, state.grant) == (1 if r.status_code == 200 else 0)


def download_recover(gw: Gateway, state: Shared) -> None:
    r = gw.evaluator.content(state.artifact)
    assert r.status_code == 200 and gw.evaluator.decrypt(r.data) == state.plaintext


@pytest.mark.parametrize("seam", SEAMS)
def test_downloads_survive_every_fault(gw: Gateway, seam: str) -> None:
    """From the first request under a grant: the key's release, then the download."""
    run_matrix(
        gw,
        seam,
        lambda gw: shared_artifact(gw, released=False, size=2 * MIB),
        lambda gw, state: [gw.evaluator.content(state.artifact)],
        download_check,
        download_recover,
    )


# --- withdrawal --------------------------------------------------------------------------


def withdraw(gw: Gateway, state: Shared) -> Any:
    return gw.client.delete(f"/v1/artifacts/{state.artifact['id']}", headers=gw.lab.auth)


def withdrawal_check(gw: Gateway, state: Shared, answers: list[Any]) -> None:
    r = answers[0]
    with gw.rt.db.session() as session:
        artifact = session.get(Artifact, state.artifact["id"])
        assert artifact is not None
        key = session.get(CustodyKey, artifact.upload_id)
    if r.status_code in (202, 204):
        assert artifact.state == "withdrawn" and key is None
        assert gw.evaluator.content(state.artifact).status_code == 410
        return
    # refused: nothing was changed, and nothing already stored was harmed
    assert artifact.state == "available" and key is not None
    got = gw.evaluator.content(state.artifact)
    assert got.status_code == 200 and gw.evaluator.decrypt(got.data) == state.plaintext


def withdrawal_recover(gw: Gateway, state: Shared) -> None:
    with gw.rt.db.session() as session:
        artifact = session.get(Artifact, state.artifact["id"])
        assert artifact is not None
        still = artifact.state == "available"
    if still:
        assert withdraw(gw, state).status_code in (202, 204)
    for _ in range(3):
        with gw.rt.db.session() as session:
            if session.get(PendingDeletion, artifact.object_key) is None:
                break
        sweep_once(gw.rt)
    assert not gw.store.inner.exists(artifact.object_key)
    assert gw.evaluator.content(state.artifact).status_code == 410


@pytest.mark.parametrize("seam", SEAMS)
def test_withdrawal_survives_every_fault(gw: Gateway, seam: str) -> None:
    run_matrix(
        gw,
        seam,
        lambda gw: shared_artifact(gw, released=True, size=64 * KB),
        lambda gw, state: [withdraw(gw, state)],
        withdrawal_check,
        withdrawal_recover,
    )


# --- the sweep ---------------------------------------------------------------------------


@dataclass
class Due:
    """One of each thing a sweep finishes."""

    expiring: Shared
    past_grant: Shared
    stale_upload: dict[str, Any]
    queued: Shared
    stale_claim: Prepared


def sweep_prepare(gw: Gateway) -> Due:
    rt, past = gw.rt, gw.clock.now() - timedelta(seconds=1)
    expiring = shared_artifact(gw, released=True, size=32 * KB)
    past_grant = shared_artifact(gw, released=True, size=32 * KB)
    stale_upload = gw.lab.create(name="stale")
    assert gw.lab.put(stale_upload, 1, b"abc").status_code == 200
    queued = shared_artifact(gw, released=True, size=32 * KB)
    gw.store.arm(1)  # the withdrawal's deletion fails: it stays queued
    assert withdraw(gw, queued).status_code == 202
    gw.store.disarm()
    stale_claim = prepare_upload(gw, size=32 * KB)
    actor = identity.authenticate(rt, gw.principals.tokens["lab"])
    done = completion.Completion(stale_claim.body["manifest"], stale_claim.body["signature"])
    assert isinstance(
        completion.claim(rt, Caller(actor), stale_claim.upload["id"], done), completion.Claim
    )
    long_ago = past - timedelta(seconds=rt.config.uploads.completing_timeout_seconds)
    with rt.db.session() as session:
        session.execute(
            update(Artifact)
            .where(Artifact.id == expiring.artifact["id"])
            .values(review_ends_at=past)
        )
        session.execute(update(Grant).where(Grant.id == past_grant.grant).values(not_after=past))
        session.execute(
            update(Upload).where(Upload.id == stale_upload["id"]).values(expires_at=past)
        )
        session.execute(
            update(Upload)
            .where(Upload.id == stale_claim.upload["id"])
            .values(completing_since=long_ago)
        )
    return Due(expiring, past_grant, stale_upload, queued, stale_claim)


def sweep_act(gw: Gateway, due: Due) -> list[Any]:
    sweep_once(gw.rt)  # a sweep never raises: each step guards itself
    return []


def sweep_check(gw: Gateway, due: Due, answers: list[Any]) -> None:
    """Done or not, nothing due is reachable any more."""
    ev = gw.evaluator
    assert ev.content(due.expiring.artifact).status_code == 410
    assert ev.content(due.past_grant.artifact).status_code == 403
    assert ev.content(due.queued.artifact).status_code == 410
    assert gw.lab.put(due.stale_upload, 2, b"abc").status_code in (409, 410)


def sweep_recover(gw: Gateway, due: Due) -> None:
    sweep_once(gw.rt)
    # A claim the faulty sweep took over but could not settle is stale again only later.
    gw.clock.advance(seconds=gw.rt.config.uploads.completing_timeout_seconds)
    sweep_once(gw.rt)
    rt = gw.rt
    with rt.db.session() as session:
        expired = session.get(Artifact, due.expiring.artifact["id"])
        assert expired is not None and expired.state == "expired"
        grant = session.get(Grant, due.past_grant.grant)
        assert grant is not None and grant.state == "expired"
        upload = session.get(Upload, due.stale_upload["id"])
        assert upload is not None and upload.state == "timed_out"
        assert session.query(PendingDeletion).count() == 0
        claim = session.get(Upload, due.stale_claim.upload["id"])
        assert claim is not None and claim.state in ("open", "completed")
    for shared in (due.expiring, due.queued):
        assert not rt.store.inner.exists(helpers.object_key(rt, shared.artifact["id"]))
    r = complete(gw, due.stale_claim)
    assert r.status_code in (200, 201), r.get_json()


@pytest.mark.parametrize("seam", SEAMS)
def test_the_sweep_survives_every_fault(gw: Gateway, seam: str) -> None:
    run_matrix(gw, seam, sweep_prepare, sweep_act, sweep_check, sweep_recover)
