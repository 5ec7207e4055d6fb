"""A real ``gateway serve`` with short edge timeouts, the clients that probe it, and its memory.

The server is the end-to-end one (``tests/e2e/conftest.start_server``) with every edge
bound shortened, so that each hostile pattern is cut within seconds. Probes open a new
connection each time, so a stuck accept queue shows too. They come from 127.0.0.1;
attacks come from other loopback addresses (:func:`attacker`), since the server counts
connections and bytes per client address.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from nacl.signing import SigningKey

from gateway.age.x25519 import X25519Identity
from tests import helpers
from tests.e2e.conftest import Server, start_server, stop_server

MIB = 1 << 20
#: What the reliability server runs with (seconds, bytes/s): short, so attacks end soon.
EDGE_ENV = {
    "GATEWAY_SERVER_THREADS": "4",
    "GATEWAY_SERVER_UPLOAD_THREADS": "4",
    "GATEWAY_SERVER_DOWNLOAD_THREADS": "8",
    "GATEWAY_SERVER_HEADER_TIMEOUT_SECONDS": "3",
    "GATEWAY_SERVER_IDLE_TIMEOUT_SECONDS": "2",
    "GATEWAY_SERVER_BODY_TIMEOUT_SECONDS": "3",
    "GATEWAY_SERVER_SEND_TIMEOUT_SECONDS": "1",
    "GATEWAY_SERVER_MIN_RATE_BYTES_PER_SECOND": "65536",
    "GATEWAY_SERVER_MIN_RATE_GRACE_SECONDS": "2",
    "GATEWAY_SERVER_QUEUE_TIMEOUT_SECONDS": "3",
    "GATEWAY_SWEEPER_INTERVAL_SECONDS": "0",
    # The attacks here are on the edge, which holds whatever the rate limits say; with them on,
    # thousands of requests from one address would meet 429s instead of the edge's answers.
    "GATEWAY_LIMITS_RATE_LIMITS": "false",
}
PROBE_LIMIT = 1.0
RSS_LIMIT_KIB = 200 * 1024
_ATTACKERS = (f"127.0.{i // 250}.{2 + i % 250}" for i in itertools.count())


def attacker() -> str:
    """A loopback address no test has used yet: one attacking client."""
    return next(_ATTACKERS)


def connect(edge: Edge, source: str, timeout: float = 5) -> socket.socket:
    """A new connection to the server from ``source``."""
    return socket.create_connection((edge.host, edge.port), timeout, (source, 0))


@dataclass
class Edge:
    """The server under attack, and what the probes and attacks need of it."""

    server: Server
    host: str
    port: int
    probe_upload: str  # an open upload whose only part is PROBE_PART
    victim_upload: str  # an open upload that attacks send parts to
    victim_part_size: int
    artifact: str  # a large artifact the evaluator holds a grant on
    artifact_size: int

    def worker_pids(self) -> list[int]:
        assert self.server.process is not None
        pid = self.server.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(p) for p in children]

    def peak_rss_kib(self) -> int:
        """The largest VmHWM of the worker processes: their peak memory since they started."""
        best = 0
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
        return best

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0 when absent)."""
        text = requests.get(self.server.url + "/metrics", timeout=5).text
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def stored_parts(self, upload: str) -> list[dict[str, object]]:
        r = requests.get(
            f"{self.server.url}/v1/uploads/{upload}", headers=self.server.auth("lab"), timeout=5
        )
        assert r.status_code == 200, r.text
        parts: list[dict[str, object]] = r.json()["parts"]
        return parts


PROBE_PART = b"probe part " * 90


def probe(edge: Edge) -> dict[str, float]:
    """``/healthz``, an authenticated ``GET /v1/me`` and a small part upload: seconds each.

    Each must answer (correctly) within :data:`PROBE_LIMIT`; a failure or a timeout
    counts as taking longer.
    """
    url, out = edge.server.url, {}
    calls = {
        "healthz": lambda: requests.get(url + "/healthz", timeout=PROBE_LIMIT * 3),
        "me": lambda: requests.get(
            url + "/v1/me", headers=edge.server.auth("lab"), timeout=PROBE_LIMIT * 3
        ),
        "part": lambda: requests.put(
            f"{url}/v1/uploads/{edge.probe_upload}/parts/1",
            data=PROBE_PART,
            headers={**edge.server.auth("lab"), "X-Content-SHA256": helpers.sha(PROBE_PART)},
            timeout=PROBE_LIMIT * 3,
        ),
    }
    for name, call in calls.items():
        start = time.monotonic()
        try:
            ok = call().status_code == 200
        except requests.RequestException:
            ok = False
        out[name] = time.monotonic() - start if ok else float("inf")
    return out


def lab_upload(server: Server, size: int, who: str = "lab") -> dict[str, object]:
    """A new open upload of ``size`` bytes by ``who`` (a lab's token)."""
    r = requests.post(
        server.url + "/v1/uploads",
        json={"name": f"u{size}", "kind": "weights", "share_with": ["agency-a"], "size": size},
        headers=server.auth(who),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    upload: dict[str, object] = r.json()
    return upload


def _artifact(server: Server, key: SigningKey, plaintext: bytes) -> tuple[str, int]:
    """An uploaded, completed artifact of ``plaintext``, and its ciphertext size."""
    lab = requests.Session()
    lab.headers.update(server.auth("lab"))
    up = lab.post(
        server.url + "/v1/uploads",
        json={"name": "big.bin", "kind": "weights", "share_with": ["agency-a"]},
    ).json()
    data = helpers.age_file(up["recipient"], plaintext)
    for n, part in enumerate(helpers.split(data, up["part_size"]), start=1):
        r = lab.put(
            f"{server.url}/v1/uploads/{up['id']}/parts/{n}",
            data=part,
            headers={"X-Content-SHA256": helpers.sha(part)},
        )
        assert r.status_code == 200, r.text
    m = helpers.manifest(up, data, plaintext)
    r = lab.post(
        f"{server.url}/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, key)},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), len(data)


def _grant(server: Server, artifact: str) -> None:
    ev = requests.Session()
    ev.headers.update(server.auth("eval"))
    recipient = str(X25519Identity.generate().to_recipient())
    assert ev.put(server.url + "/v1/me/recipient", json={"recipient": recipient}).ok
    req = ev.post(
        f"{server.url}/v1/artifacts/{artifact}/access-requests",
        json={"justification": "reliability", "duration_hours": 24},
    ).json()
    r = requests.post(
        f"{server.url}/v1/access-requests/{req['id']}/approve",
        json={"duration_hours": 24},
        headers=server.auth("lab"),
        timeout=10,
    )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    yield from open_edge(tmp_path_factory, EDGE_ENV)


def open_edge(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Edge]:
    """A server with ``env``, its uploads, artifact and grant: yields it, then stops it."""
    server = start_server(tmp_path_factory.mktemp("edge"), env)
    try:
        server.gateway("admin", "org", "create", "lab-b", "--kind", "lab")
        server.tokens["lab_b"] = server.token("lab-b", "lab", "bob")
        key = SigningKey.generate()
        r = requests.put(
            server.url + "/v1/me/signing-key",
            json=helpers.key_registration(
                key,
                requests.get(server.url + "/v1/me", headers=server.auth("lab"), timeout=10).json(),
            ),
            headers=server.auth("lab"),
            timeout=10,
        )
        assert r.ok, r.text
        probe_upload = lab_upload(server, len(PROBE_PART))
        victim = lab_upload(server, 64 * MIB)
        plaintext = hashlib.sha256(b"edge").digest() * (24 * MIB // 32)
        artifact, size = _artifact(server, key, plaintext)
        _grant(server, artifact)
        host, port = server.url.removeprefix("http://").split(":")
        yield Edge(
            server,
            host,
            int(port),
            str(probe_upload["id"]),
            str(victim["id"]),
            int(str(victim["part_size"])),
            artifact,
            size,
        )
    finally:
        stop_server(server)
