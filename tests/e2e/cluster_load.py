"""What the three-instance test makes its clients do, and what it keeps of every answer.

Each client spreads its requests over the instances, and sends the requests that race
(complete, approve, revoke, withdraw, a grant's first downloads) to every instance at
the same moment, so that the instances, not one process, decide who wins. The
:class:`Recorder` keeps every answer with its server request id: afterwards, each
acknowledged access must be in the log exactly once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyrage
import requests
from nacl.signing import SigningKey
from pyrage import x25519

from tests import helpers

#: Answers that are not a new effect: a duplicate completion answered with the artifact
#: another request made (200), which records nothing.
NOT_AN_EFFECT = {("POST", "complete", 200)}
#: A store that refuses to complete one multipart upload twice (moto answers 500) makes the
#: loser of a completion race a 503 that names the store; it changed nothing.
STORE_UNAVAILABLE = "the object store is unavailable"
#: The audited routes, by (method, route kind), and the action each 2xx answer records.
AUDITED = {
    ("POST", "uploads"): "upload.create",
    ("POST", "complete"): "upload.complete",
    ("GET", "artifact"): "artifact.read",
    ("POST", "access-requests"): "access.request",
    ("POST", "approve"): "access.approve",
    ("DELETE", "grants"): "grant.revoke",
    ("DELETE", "artifacts"): "artifact.withdraw",
    ("GET", "content"): "content.download",
    ("POST", "download-url"): "url.issue",
}


@dataclass
class Answer:
    method: str
    kind: str
    status: int
    request_id: str
    instance: str


@dataclass
class Recorder:
    """Every answer the clients got; 5xx answers are errors the test reports."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    store_refusals: int = 0

    def call(
        self, s: requests.Session, method: str, base: str, path: str, kind: str, **kw: Any
    ) -> requests.Response:
        r = s.request(method, base + path, timeout=60, **kw)
        with self.lock:
            self.answers.append(
                Answer(method, kind, r.status_code, r.headers.get("X-Request-Id", ""), base)
            )
            if kind == "complete" and r.status_code == 503 and STORE_UNAVAILABLE in r.text:
                self.store_refusals += 1
            elif r.status_code >= 500:
                self.errors.append(f"{method} {base}{path} -> {r.status_code} {r.text[:300]}")
        return r

    def race(
        self, s: requests.Session, method: str, bases: Sequence[str], path: str, kind: str
    ) -> list[requests.Response]:
        """The same request to every instance at once."""
        start = threading.Barrier(len(bases))

        def one(base: str) -> requests.Response:
            start.wait()
            return self.call(s, method, base, path, kind, json={} if method == "POST" else None)

        with ThreadPoolExecutor(len(bases)) as pool:
            return list(pool.map(one, bases))

    def acknowledged(self) -> list[tuple[str, str]]:
        """(request id, action) of every 2xx answer of an audited route."""
        return [
            (a.request_id, AUDITED[(a.method, a.kind)])
            for a in self.answers
            if 200 <= a.status < 300
            and (a.method, a.kind) in AUDITED
            and (a.method, a.kind, a.status) not in NOT_AN_EFFECT
        ]


@dataclass
class Outcomes:
    """What the racing requests answered, per race: exactly one winner each."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    races: dict[str, list[list[int]]] = field(default_factory=dict)

    def add(self, what: str, answers: Sequence[requests.Response]) -> None:
        with self.lock:
            self.races.setdefault(what, []).append(sorted(r.status_code for r in answers))


def session(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def lab_loop(
    urls: Sequence[str],
    token: str,
    share_with: str,
    rec: Recorder,
    outcomes: Outcomes,
    running: Callable[[], bool],
    seed: int,
) -> None:
    s, rng = session(token), random.Random(seed)
    key = SigningKey.generate()
    me = s.get(urls[0] + "/v1/me", timeout=30).json()
    s.put(urls[0] + "/v1/me/signing-key", json=helpers.key_registration(key, me), timeout=30)
    n = 0
    while running():
        n += 1
        _upload(urls, s, key, share_with, rec, outcomes, rng, f"m-{seed}-{n}")
        base = rng.choice(urls)
        pending = s.get(base + "/v1/access-requests?state=pending", timeout=30).json()["items"]
        for req in pending:
            done = rec.race(s, "POST", urls, f"/v1/access-requests/{req['id']}/approve", "approve")
            outcomes.add("approve", done)
        grants = s.get(base + "/v1/grants?state=active", timeout=30).json()["items"]
        if grants and rng.random() < 0.3:
            g = rng.choice(grants)
            outcomes.add("revoke", rec.race(s, "DELETE", urls, f"/v1/grants/{g['id']}", "grants"))
        if n % 3 == 0:  # every third round, one of its artifacts is withdrawn
            arts = s.get(base + "/v1/artifacts?limit=50", timeout=30).json()["items"]
            live = [a for a in arts if a["state"] == "available"]
            if len(live) > 2:
                a = rng.choice(live)
                done = rec.race(s, "DELETE", urls, f"/v1/artifacts/{a['id']}", "artifacts")
                outcomes.add("withdraw", done)


#: Completions of one upload on every instance at the same moment (True), or on one, then the
#: same completion on the other two at once (False). Simultaneous completions need the
#: completion flow to claim the upload before it touches the store: without that claim, a
#: loser can find the store's upload completed by the winner, fail on the database's
#: one-artifact-per-upload constraint (a 503) and discard the winner's object.
SIMULTANEOUS_COMPLETIONS = False


def _upload(
    urls: Sequence[str],
    s: requests.Session,
    key: SigningKey,
    share_with: str,
    rec: Recorder,
    outcomes: Outcomes,
    rng: random.Random,
    name: str,
) -> None:
    """Create on one instance, send the part to another, complete (see SIMULTANEOUS_COMPLETIONS)."""
    body = {"name": name, "kind": "weights", "share_with": [share_with]}
    up = rec.call(s, "POST", rng.choice(urls), "/v1/uploads", "uploads", json=body).json()
    plain = helpers.random_bytes(rng.randint(1, 40_000), seed=rng.randint(0, 1 << 30))
    data = helpers.age_file(up["recipient"], plain)
    r = s.put(
        f"{rng.choice(urls)}/v1/uploads/{up['id']}/parts/1",
        data=data,
        headers={"X-Content-SHA256": helpers.sha(data)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    m = helpers.manifest(up, data, plain)
    done = {"manifest": m, "signature": helpers.sign(m, key)}
    path = f"/v1/uploads/{up['id']}/complete"
    first, others = rng.choice(urls), list(urls)
    others.remove(first)
    answers = (
        []
        if SIMULTANEOUS_COMPLETIONS
        else [rec.call(s, "POST", first, path, "complete", json=done)]
    )
    targets = list(urls) if SIMULTANEOUS_COMPLETIONS else others
    start = threading.Barrier(len(targets))

    def complete(base: str) -> requests.Response:
        start.wait()
        return rec.call(s, "POST", base, path, "complete", json=done)

    with ThreadPoolExecutor(len(targets)) as pool:
        outcomes.add("complete", answers + list(pool.map(complete, targets)))


def evaluator_loop(
    urls: Sequence[str],
    token: str,
    rec: Recorder,
    outcomes: Outcomes,
    running: Callable[[], bool],
    seed: int,
) -> None:
    s, rng = session(token), random.Random(seed)
    identity = x25519.Identity.generate()
    s.put(urls[0] + "/v1/me/recipient", json={"recipient": str(identity.to_public())}, timeout=30)
    asked: set[str] = set()
    released: set[str] = set()
    while running():
        base = rng.choice(urls)
        items = s.get(base + "/v1/artifacts?limit=20", timeout=30).json()["items"]
        live = [a["id"] for a in items if a["state"] == "available"]
        if not live:
            time.sleep(0.2)
            continue
        art = rng.choice(live)
        rec.call(s, "GET", rng.choice(urls), f"/v1/artifacts/{art}", "artifact")
        if art not in asked:
            asked.add(art)
            body = {"justification": "cluster"}
            rec.call(
                s,
                "POST",
                rng.choice(urls),
                f"/v1/artifacts/{art}/access-requests",
                "access-requests",
                json=body,
            )
        granted = s.get(rng.choice(urls) + "/v1/grants?state=active", timeout=30).json()["items"]
        if art not in {g["artifact"] for g in granted}:
            continue  # refusals are the denier's
        path = f"/v1/artifacts/{art}/content"
        if art in released:
            got = [rec.call(s, "GET", rng.choice(urls), path, "content")]
        else:  # the grant's first downloads, at once: the key is released once, by one instance
            got = rec.race(s, "GET", urls, path, "content")
        for r in got:
            if r.status_code == 200:
                released.add(art)
                pyrage.decrypt(r.content, [identity])
        if rng.random() < 0.2:
            rec.call(
                s, "POST", rng.choice(urls), f"/v1/artifacts/{art}/download-url", "download-url"
            )


def denier_loop(
    urls: Sequence[str], token: str, running: Callable[[], bool], refused: list[int]
) -> None:
    """Refusals of one thing (an access request for no artifact), on every instance at once.

    They are counted in one interval (``limits.denial_interval_seconds`` outlasts the run);
    the test closes it afterwards, for the sweepers to record.
    """
    s = session(token)
    start = threading.Barrier(len(urls))

    def refuse(base: str) -> int:
        start.wait()
        r = s.post(base + "/v1/artifacts/art_nope/access-requests", json={}, timeout=30)
        return r.status_code

    with ThreadPoolExecutor(len(urls)) as pool:
        while running():
            statuses = list(pool.map(refuse, urls))
            assert statuses == [404] * len(urls), statuses
            refused.extend(statuses)
            time.sleep(0.3)


def checkpoint_loop(
    urls: Sequence[str], token: str, running: Callable[[], bool], seen: list[str], rec: Recorder
) -> None:
    """Checkpoints as each instance serves them while the log grows."""
    s, n = session(token), 0
    while running():
        r = s.get(urls[n % len(urls)] + "/v1/audit/checkpoint", timeout=30)
        if r.status_code != 200:
            with rec.lock:
                rec.errors.append(f"checkpoint from {urls[n % len(urls)]}: {r.status_code}")
        else:
            seen.append(r.text)
        n += 1
        time.sleep(0.25)
