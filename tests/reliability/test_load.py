"""Load: labs and evaluators at once against a real ``gateway serve``, for a bounded time.

Two lab threads upload, approve every pending request and now and then revoke a grant;
three evaluator threads list, read, ask for access, download (re-headered, decrypted) and
ask for download URLs, for ``GATEWAY_LOAD_SECONDS`` (default 25). Afterwards: every 2xx
answer of an audited route is in the log exactly once under the server request id it
carried, no grant's key was released twice, every download names a grant whose key was
released, and ``gateway audit verify`` says the log verifies. The rate budgets are raised
for this server (it legitimately hammers the gateway).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
import requests
from nacl.signing import SigningKey
from pyrage import x25519

from tests import helpers
from tests.e2e.conftest import BIN, Server, start_server, stop_server

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.e2e]

SECONDS = float(os.environ.get("GATEWAY_LOAD_SECONDS", "25"))
UNLIMITED = {
    f"GATEWAY_LIMITS_{scope}_{kind}": "1000000/minute"
    for scope in ("PRINCIPAL", "ADDRESS")
    for kind in ("READS", "WRITES", "PARTS", "CONTENT")
}
# The audited routes, and the action each 2xx answer records (content: the download).
AUDITED = {
    ("POST", "uploads"): "upload.create",
    ("POST", "complete"): "upload.complete",
    ("GET", "artifact"): "artifact.read",
    ("POST", "access-requests"): "access.request",
    ("POST", "approve"): "access.approve",
    ("DELETE", "grants"): "grant.revoke",
    ("GET", "content"): "content.download",
    ("POST", "download-url"): "url.issue",
}


class Recorder:
    """Every 2xx answer of an audited route: (server request id, the action it must record)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def call(self, s: requests.Session, method: str, url: str, kind: str, **kw: Any) -> Any:
        r = s.request(method, url, timeout=30, **kw)
        with self.lock:
            if r.status_code >= 500:
                self.errors.append(f"{method} {url} -> {r.status_code} {r.text[:200]}")
            elif r.ok and (method, kind) in AUDITED:
                self.answers.append((r.headers["X-Request-Id"], AUDITED[(method, kind)]))
        return r


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, {**UNLIMITED, "GATEWAY_SERVER_THREADS": "8"})
    server.tokens["eval2"] = server.token("agency-a", "evaluator", "eve2")
    yield server
    stop_server(server)


def lab_loop(server: Server, rec: Recorder, deadline: float, seed: int) -> None:
    s, rng, base = requests.Session(), random.Random(seed), server.url
    s.headers.update(server.auth("lab"))
    key = SigningKey.generate()
    me = s.get(base + "/v1/me", timeout=30).json()
    s.put(base + "/v1/me/signing-key", json=helpers.key_registration(key, me), timeout=30)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        body = {"name": f"m-{seed}-{n}", "kind": "weights", "share_with": ["agency-a"]}
        up = rec.call(s, "POST", base + "/v1/uploads", "uploads", json=body).json()
        plain = helpers.random_bytes(rng.randint(1, 50_000), seed=n)
        data = helpers.age_file(up["recipient"], plain)
        s.put(
            f"{base}/v1/uploads/{up['id']}/parts/1",
            data=data,
            headers={"X-Content-SHA256": helpers.sha(data)},
            timeout=30,
        )
        m = helpers.manifest(up, data, plain)
        done = {"manifest": m, "signature": helpers.sign(m, key)}
        rec.call(s, "POST", f"{base}/v1/uploads/{up['id']}/complete", "complete", json=done)
        pending = s.get(base + "/v1/access-requests?state=pending", timeout=30).json()["items"]
        for req in pending:
            rec.call(
                s, "POST", f"{base}/v1/access-requests/{req['id']}/approve", "approve", json={}
            )
        grants = s.get(base + "/v1/grants?state=active", timeout=30).json()["items"]
        if grants and rng.random() < 0.3:
            g = rng.choice(grants)
            rec.call(s, "DELETE", f"{base}/v1/grants/{g['id']}", "grants")


def evaluator_loop(server: Server, who: str, rec: Recorder, deadline: float, seed: int) -> None:
    s, rng, base = requests.Session(), random.Random(seed), server.url
    s.headers.update(server.auth(who))
    identity = x25519.Identity.generate()
    s.put(base + "/v1/me/recipient", json={"recipient": str(identity.to_public())}, timeout=30)
    asked: set[str] = set()
    while time.monotonic() < deadline:
        items = s.get(base + "/v1/artifacts?limit=20", timeout=30).json()["items"]
        if not items:
            time.sleep(0.2)
            continue
        art = rng.choice(items)["id"]
        rec.call(s, "GET", f"{base}/v1/artifacts/{art}", "artifact")
        if art not in asked:
            asked.add(art)
            body = {"justification": "load"}
            rec.call(
                s,
                "POST",
                f"{base}/v1/artifacts/{art}/access-requests",
                "access-requests",
                json=body,
            )
        r = rec.call(s, "GET", f"{base}/v1/artifacts/{art}/content", "content")
        if r.ok:
            pyrage.decrypt(r.content, [identity])
        if rng.random() < 0.2:
            rec.call(s, "POST", f"{base}/v1/artifacts/{art}/download-url", "download-url")


def all_entries(server: Server) -> list[dict[str, Any]]:
    out, cursor = [], ""
    while True:
        r = requests.get(
            f"{server.url}/v1/audit/entries?limit=1000" + (f"&cursor={cursor}" if cursor else ""),
            headers=server.auth("auditor"),
            timeout=60,
        ).json()
        out += [item["entry"] for item in r["items"]]
        cursor = r["next_cursor"]
        if not cursor:
            return out


def test_concurrent_labs_and_evaluators_leave_a_log_of_exactly_what_happened(
    busy: Server,
) -> None:
    rec = Recorder()
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=lab_loop, args=(busy, rec, deadline, i)) for i in (1, 2)]
    threads += [
        threading.Thread(target=evaluator_loop, args=(busy, who, rec, deadline, 10 + i))
        for i, who in enumerate(("eval", "eval2", "eval_b"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 120)
    assert not any(t.is_alive() for t in threads)
    assert rec.errors == []
    entries = all_entries(busy)
    logged = Counter((e["request_id"], e["action"]) for e in entries)
    missing = [a for a in rec.answers if logged[a] != 1]
    assert missing == [], f"{len(missing)} answers not logged exactly once: {missing[:5]}"
    kinds = Counter(action for _, action in rec.answers)
    assert kinds["content.download"] > 0 and kinds["upload.complete"] > 0, kinds
    releases = Counter(e["grant"] for e in entries if e["action"] == "key.release")
    assert releases and max(releases.values()) == 1
    downloads = {e["grant"] for e in entries if e["action"] == "content.download"}
    assert downloads <= set(releases)
    vkey = requests.get(busy.url + "/v1/audit/key", timeout=30).text.strip()
    env = {**busy.env, "GATEWAY_URL": busy.url, "GATEWAY_TOKEN": busy.tokens["auditor"]}
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
