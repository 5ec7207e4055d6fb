"""Three instances, one truth: three ``gateway serve`` on one PostgreSQL and one S3 (moto server).

The instances run the shipped production profile (:mod:`tests.e2e.cluster`), each
sweeping every second. For ``GATEWAY_CLUSTER_SECONDS`` (20 by default) two labs upload,
complete, approve, revoke and withdraw, three evaluators read, ask, download and take
download URLs, a fourth draws refusals in bursts, and an auditor fetches checkpoints,
every request spread over the instances and every racing one sent to all three at once.
Then time is moved for a few rows (their deadlines set in the past, in the database)
so that the sweepers expire artifacts and grants and time uploads out.

Afterwards: the log is one sequence (indices 0..n-1, each once) that verifies, and every
checkpoint any instance served is the root of its first entries (no fork); every
acknowledged access is in it exactly once; each race had one winner, and the log one
completion per upload, one key release per grant, one end per grant, one shred per
artifact, one time-out per upload; the anchors hold no two checkpoints of one size;
the refusals are counted exactly (no closed interval recorded twice).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from gateway.audit import merkle, note
from gateway.db import Database
from gateway.models import Artifact, ArtifactState, Grant, GrantState, Upload, UploadState
from gateway.services.denials import DenialCount
from tests import pg
from tests.e2e import cluster_load as load
from tests.e2e.cluster import BIN, UNLIMITED, Cluster, cluster_env
from tests.storage.conftest import moto_server  # noqa: F401 - the fixture, shared

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SECONDS = float(os.environ.get("GATEWAY_CLUSTER_SECONDS", "10"))
EXTRA_SECONDS = 120  # see _drive
ORIGIN = "gateway.example.org/audit"  # production.toml's
STORE_CLEANUP = "clean up abandoned store uploads"  # the sweep step (gateway.sweeper)
SETTINGS = {
    **UNLIMITED,
    "GATEWAY_SERVER_TRUSTED_PROXIES": "",
    "GATEWAY_SWEEPER_INTERVAL_SECONDS": "1",
    # A kept-alive connection an instance closes as idle just as a client reuses it is reset
    # (the client's to retry); on this loaded machine that window is wide. The edge's idle
    # bound has tests of its own: here no connection outlives its idle time.
    "GATEWAY_SERVER_IDLE_TIMEOUT_SECONDS": "300",
    "GATEWAY_AUDIT_ANCHOR_EVERY_ENTRIES": "20",
    "GATEWAY_AUDIT_ANCHOR_EVERY_MINUTES": "0",
    # Refusals stay in their intervals for the whole run; the test then closes them. A
    # sweeper closing an interval while a refusal reopens it races in the denial counts
    # (gateway.services.denials: the refusal answers 503, or the repeats are recorded twice).
    "GATEWAY_LIMITS_DENIAL_INTERVAL_SECONDS": "3600",
    "GATEWAY_UPLOADS_MIN_PART_SIZE_MIB": "5",
    "GATEWAY_UPLOADS_DEFAULT_PART_SIZE_MIB": "5",
    "GATEWAY_QUOTAS_OPEN_UPLOADS_PER_ORG": "200",
}


@pytest.fixture
def three(
    tmp_path: Path,
    pg_cluster: pg.Cluster,
    moto_server: str,  # noqa: F811 - the imported fixture
) -> Iterator[Cluster]:
    name = f"cluster_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(name)
    bucket = f"cluster-{uuid.uuid4().hex[:12]}"
    env = cluster_env(
        tmp_path, database_url=url, endpoint=moto_server, bucket=bucket, settings=SETTINGS
    )
    cluster = Cluster(tmp_path, env, bucket, moto_server)
    holder = Database(url)
    try:
        cluster.init()
        # moto lists every multipart upload as begun in 2010, so the sweep step that aborts
        # the store's abandoned uploads would abort those in flight: the test leads that step.
        with holder.leader(f"sweep: {STORE_CLEANUP}") as held:
            assert held
            cluster.start(3)
            yield cluster
    finally:
        cluster.stop()
        holder.dispose()
        pg_cluster.drop_database(name)


def _drive(cluster: Cluster) -> dict[str, Any]:
    """The concurrent phase; what the clients saw."""
    urls, tokens = cluster.urls, cluster.tokens
    rec, outcomes = load.Recorder(), load.Outcomes()
    refused: list[int] = []
    checkpoints: list[str] = []
    deadline = time.monotonic() + SECONDS
    # The clients run SECONDS, and on a loaded machine on until every kind of access
    # the checks need has been acknowledged at least once (within a bound).
    needed = {"upload.complete", "access.approve", "content.download", "artifact.withdraw"}

    def running() -> bool:
        now = time.monotonic()
        if now < deadline:
            return True
        with rec.lock:
            seen = {action for _, action in rec.acknowledged()}
        return now < deadline + EXTRA_SECONDS and not needed <= seen

    jobs: list[tuple[Any, tuple[Any, ...]]] = [
        (load.lab_loop, (urls, tokens["lab"], "agency-a", rec, outcomes, running, 1)),
        (load.lab_loop, (urls, tokens["lab_b"], "agency-b", rec, outcomes, running, 2)),
        (load.evaluator_loop, (urls, tokens["eval"], rec, outcomes, running, 11)),
        (load.evaluator_loop, (urls, tokens["eval2"], rec, outcomes, running, 12)),
        (load.evaluator_loop, (urls, tokens["eval_b"], rec, outcomes, running, 13)),
        (load.checkpoint_loop, (urls, tokens["auditor"], running, checkpoints, rec)),
        (load.denier_loop, (urls, tokens["eval_b"], running, refused)),
    ]
    failures: list[BaseException] = []

    def run(fn: Any, args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + EXTRA_SECONDS + 180)
    assert not any(t.is_alive() for t in threads), "a client never finished"
    assert failures == [], failures
    return {"rec": rec, "outcomes": outcomes, "refused": len(refused), "checkpoints": checkpoints}


def entries(cluster: Cluster, **filters: str) -> list[dict[str, Any]]:
    """Every entry (``index``, ``leaf``, ``entry``), as an auditor reads them, from the last instance."""
    out: list[dict[str, Any]] = []
    cursor = ""
    query = "".join(f"&{k}={v}" for k, v in filters.items())
    while True:
        page = requests.get(
            f"{cluster.urls[-1]}/v1/audit/entries?limit=1000{query}"
            + (f"&cursor={cursor}" if cursor else ""),
            headers=cluster.auth("auditor"),
            timeout=60,
        ).json()
        out += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def _move_time(cluster: Cluster) -> dict[str, list[str]]:
    """Set a few deadlines in the past, in the database; what the sweepers must now end."""
    urls, s = cluster.urls, load.session(cluster.tokens["lab"])
    opened = []
    for n in range(3):
        body = {"name": f"left-open-{n}", "kind": "weights", "share_with": ["agency-a"]}
        opened.append(s.post(urls[n] + "/v1/uploads", json=body, timeout=30).json()["id"])
    db = Database(cluster.env["GATEWAY_DATABASE_URL"])
    past = datetime.utcnow() - timedelta(minutes=1)  # noqa: DTZ003 - the database's naive UTC
    try:
        with db.session() as session:
            live = session.scalars(
                select(Artifact.id)
                .where(Artifact.state == ArtifactState.AVAILABLE)
                .order_by(Artifact.id)
            ).all()
            expiring = list(live[:3])
            grants = session.scalars(
                select(Grant.id)
                .join(Artifact, Artifact.id == Grant.artifact_id)
                .where(Grant.state == GrantState.ACTIVE, Artifact.id.not_in(expiring))
                .order_by(Grant.id)
                .limit(3)
            ).all()
            session.execute(
                update(Artifact).where(Artifact.id.in_(expiring)).values(review_ends_at=past)
            )
            session.execute(update(Grant).where(Grant.id.in_(grants)).values(not_after=past))
            session.execute(update(Upload).where(Upload.id.in_(opened)).values(expires_at=past))
            session.execute(update(DenialCount).values(window_start=past - timedelta(hours=1)))
        return {"artifacts": expiring, "grants": list(grants), "uploads": opened}
    finally:
        db.dispose()


def _wait_swept(cluster: Cluster, due: dict[str, list[str]], seconds: float = 60) -> None:
    db = Database(cluster.env["GATEWAY_DATABASE_URL"])
    deadline = time.monotonic() + seconds
    try:
        while True:
            with db.session() as session:
                states = [
                    *session.scalars(
                        select(Artifact.state).where(Artifact.id.in_(due["artifacts"]))
                    ),
                    *session.scalars(select(Grant.state).where(Grant.id.in_(due["grants"]))),
                    *session.scalars(select(Upload.state).where(Upload.id.in_(due["uploads"]))),
                ]
                open_intervals = session.scalar(select(func.count()).select_from(DenialCount))
            due_left = {ArtifactState.AVAILABLE, GrantState.ACTIVE, UploadState.OPEN} & set(states)
            if not due_left and not open_intervals:
                return
            assert time.monotonic() < deadline, f"the sweepers left {states}, {open_intervals}"
            time.sleep(0.5)
    finally:
        db.dispose()


def test_three_instances_keep_one_log_of_exactly_what_happened(three: Cluster) -> None:
    seen = _drive(three)
    due = _move_time(three)
    _wait_swept(three, due)
    time.sleep(3)  # further sweeps on every instance: none may act again
    rec: load.Recorder = seen["rec"]
    assert rec.errors == []
    log = entries(three)
    _one_sequence_that_verifies(three, log, seen["checkpoints"])
    _every_acknowledged_access_once(rec, log)
    _one_winner_per_race(seen["outcomes"])
    _one_effect_each(log, due)
    _anchors_of_distinct_sizes(three)
    _refusals_counted_exactly(log, seen["refused"])
    _every_live_artifact_keeps_its_object(three)


def _leaf(item: dict[str, Any]) -> bytes:
    return base64.b64decode(item["leaf"])


def _one_sequence_that_verifies(
    cluster: Cluster, log: list[dict[str, Any]], served: list[str]
) -> None:
    assert [item["index"] for item in log] == list(range(len(log)))
    assert all(json.loads(_leaf(item))["index"] == item["index"] for item in log)
    vkey = requests.get(cluster.urls[0] + "/v1/audit/key", timeout=30).text.strip()
    finals = [
        requests.get(u + "/v1/audit/checkpoint", headers=cluster.auth("auditor"), timeout=30).text
        for u in cluster.urls
    ]
    opened = [note.open_checkpoint(text, [vkey], origin=ORIGIN) for text in served + finals]
    assert {(cp.size, cp.root) for cp in opened[-3:]} == {(len(log), opened[-1].root)}
    roots, tree = {}, merkle.CompactRange()
    wanted = sorted({cp.size for cp in opened})
    for item in log:
        if tree.size in wanted:
            roots[tree.size] = tree.root()
        tree.append(merkle.leaf_hash(_leaf(item)))
    roots[tree.size] = tree.root()
    forks = [(cp.size, cp.root.hex()) for cp in opened if roots.get(cp.size) != cp.root]
    assert forks == [], "checkpoints that are not a prefix of the log"
    assert len(served) > 10
    env = {
        **cluster.env,
        "GATEWAY_URL": cluster.urls[1],
        "GATEWAY_TOKEN": cluster.tokens["auditor"],
    }
    verdict = subprocess.run(
        [str(BIN / "gateway"), "audit", "verify", "--key", vkey],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verdict.returncode == 0 and verdict.stdout.startswith("ok:"), (
        verdict.stdout + verdict.stderr
    )


def _every_acknowledged_access_once(rec: load.Recorder, log: list[dict[str, Any]]) -> None:
    logged = Counter((item["entry"]["request_id"], item["entry"]["action"]) for item in log)
    acknowledged = rec.acknowledged()
    assert acknowledged
    wrong = [a for a in acknowledged if logged[a] != 1]
    assert wrong == [], f"{len(wrong)} acknowledged accesses not logged exactly once: {wrong[:5]}"
    kinds = Counter(action for _, action in acknowledged)
    for action in ("upload.complete", "access.approve", "content.download", "artifact.withdraw"):
        assert kinds[action] > 0, kinds


#: Per race: the answer of the one request that acted, and what the others may answer.
RACES = {
    "complete": (201, {200, 409, 410, 503}),  # 200: the same artifact; 503: see STORE_UNAVAILABLE
    "approve": (201, {409, 410}),
    "revoke": (204, {409, 410}),
    "withdraw": (204, {409, 410}),
}


def _one_winner_per_race(outcomes: load.Outcomes) -> None:
    """At most one request of a race acts (none when another flow ended the thing first)."""
    assert set(outcomes.races) == set(RACES), outcomes.races
    for what, races in outcomes.races.items():
        won, lost = RACES[what]
        for statuses in races:
            assert statuses.count(won) <= 1, (what, statuses)
            assert set(statuses) - {won} <= lost, (what, statuses)
        assert sum(statuses.count(won) for statuses in races) > len(races) / 2, (what, races)


def _one_effect_each(log: list[dict[str, Any]], due: dict[str, list[str]]) -> None:
    def by(actions: tuple[str, ...], key: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for item in log:
            e = item["entry"]
            if e["action"] in actions:
                found[e["details"]["upload"] if key == "upload" else e[key]] += 1
        return found

    for actions, key in [
        (("upload.complete",), "upload"),
        (("upload.timeout",), "upload"),
        (("key.release",), "grant"),
        (("grant.revoke", "grant.expire"), "grant"),
        (("artifact.withdraw", "artifact.expire"), "artifact"),
    ]:
        counts = by(actions, key)
        assert counts and max(counts.values()) == 1, (actions, counts.most_common(3))
    downloads = {
        item["entry"]["grant"] for item in log if item["entry"]["action"] == "content.download"
    }
    assert downloads <= set(by(("key.release",), "grant"))
    expired = by(("artifact.expire",), "artifact")
    assert [expired[a] for a in due["artifacts"]] == [1, 1, 1]
    ended = by(("grant.expire",), "grant")
    assert [ended[g] for g in due["grants"]] == [1] * len(due["grants"]) and due["grants"]
    timed_out = by(("upload.timeout",), "upload")
    assert [timed_out[u] for u in due["uploads"]] == [1, 1, 1]


def _anchors_of_distinct_sizes(cluster: Cluster) -> None:
    s3: Any = cluster.s3()
    names = [
        o["Key"].rsplit("/", 1)[-1]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=f"{cluster.bucket}-audit")
        for o in page.get("Contents", [])
    ]
    sizes = Counter(int(n.split("-")[1]) for n in names if n.startswith("checkpoint-"))
    assert len(sizes) >= 2 and max(sizes.values()) == 1, sizes
    check = cluster.gateway("audit", "anchors", check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def _refusals_counted_exactly(log: list[dict[str, Any]], refused: int) -> None:
    counted = [
        item["entry"]["details"].get("count", 1)
        for item in log
        if item["entry"]["action"] == "auth.denied"
        and item["entry"]["org"] == "agency-b"
        and item["entry"]["artifact"] is None  # a missing artifact is named by no entry
        and item["entry"]["details"]["reason"] == "hidden"
    ]
    assert refused > 0 and sum(counted) == refused, (refused, counted)


def _every_live_artifact_keeps_its_object(cluster: Cluster) -> None:
    """No race lost an artifact its ciphertext (a losing completion must delete nothing)."""
    db = Database(cluster.env["GATEWAY_DATABASE_URL"])
    try:
        with db.session() as session:
            live = session.execute(
                select(Artifact.id, Artifact.object_key, Artifact.size).where(
                    Artifact.state == ArtifactState.AVAILABLE
                )
            ).all()
    finally:
        db.dispose()
    s3: Any = cluster.s3()
    assert live
    for artifact, key, size in live:
        found = s3.head_object(Bucket=cluster.bucket, Key=key)
        assert found["ContentLength"] == size, artifact
