"""kill -9 of a real ``gateway serve`` in the middle of each flow, then a restart.

The gunicorn master and its workers are killed with SIGKILL (by process id) during a part
upload, a completion, a download, a withdrawal and a burst of audited requests. After the
restart: the log verifies and extends the checkpoint saved before the kill (no
acknowledged entry is missing, nothing was rewritten), every request answered 2xx has its
entry, the upload resumes from the parts the gateway lists, the completion finishes when
sent again, and the withdrawal completes (the sweeper deletes the stored object).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from nacl.signing import SigningKey
from pyrage import x25519

from tests import helpers
from tests.e2e.conftest import BIN, Server, start_server, stop_server

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One gateway for the module, killed and restarted by each test (each on its own objects).

    Its sweeper runs every second and its stale completions age in two.
    """
    s = start_server(
        tmp_path_factory.mktemp("killed"),
        {
            "GATEWAY_SWEEPER_INTERVAL_SECONDS": "1",
            "GATEWAY_UPLOADS_COMPLETING_TIMEOUT_SECONDS": "2",
        },
    )
    yield s
    stop_server(s)


# --- killing and restarting ---------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def kill9(server: Server) -> None:
    """SIGKILL the gunicorn master and each of its workers, by id, and wait until they are gone."""
    assert server.process is not None
    workers = _children(server.process.pid)
    for pid in [server.process.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)


def restart(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    log = open(server.root / "server.log", "ab")  # noqa: SIM115 - closed with the process
    server.process = subprocess.Popen(
        [str(BIN / "gateway"), "serve", "--port", port],
        env=server.env,
        cwd=server.root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(
        "gateway serve did not come back: " + (server.root / "server.log").read_text()
    )


@contextlib.contextmanager
def held_once(server: Server, query: str, value: str) -> Iterator[None]:
    """Wait until ``query`` reads ``value`` in the gateway's database, then hold its write lock.

    Polled under the lock itself, so between the read and the hold nothing commits: the
    server is caught right after the commit that made ``value`` true, and blocks at its
    next one, which is where it is killed.
    """
    # No busy timeout: the lock is tried again at once, so it is taken the moment the
    # server's commit lets it go, not after SQLite's back-off.
    conn = sqlite3.connect(server.root / "var" / "gateway.db", timeout=0, isolation_level=None)
    deadline = time.monotonic() + 30
    try:
        while True:
            assert time.monotonic() < deadline, f"never saw {value!r} from {query}"
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                continue  # the server holds it: try again at once
            row = conn.execute(query).fetchone()
            if row is not None and row[0] == value:
                break
            conn.execute("COMMIT")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()


# --- the log, before and after ------------------------------------------------------------


def client(server: Server, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "GATEWAY_URL": server.url, "GATEWAY_TOKEN": server.tokens[who]}
    return subprocess.run(
        [str(BIN / "gateway"), *args],
        env=env,
        cwd=server.root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def save_checkpoint(server: Server) -> Path:
    saved = server.root / f"checkpoint-{time.monotonic_ns()}.txt"
    done = client(server, "auditor", "audit", "checkpoint", "--save", str(saved))
    assert done.returncode == 0, done.stderr
    return saved


def assert_log_extends(server: Server, saved: Path) -> None:
    key = requests.get(server.url + "/v1/audit/key", timeout=10).text.strip()
    done = client(server, "auditor", "audit", "verify", "--key", key, "--since", str(saved))
    assert done.returncode == 0 and done.stdout.startswith("ok:"), done.stdout + done.stderr


def entries(server: Server, action: str) -> list[dict[str, Any]]:
    r = requests.get(
        server.url + "/v1/audit/entries",
        params={"action": action, "limit": 1000},
        headers=server.auth("auditor"),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return [item["entry"] for item in r.json()["items"]]


# --- a lab and an evaluator over HTTP -----------------------------------------------------


class Parties:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.key = SigningKey.generate()
        self.identity = x25519.Identity.generate()
        self.lab = self._session("lab")
        self.eval = self._session("eval")
        me = self.lab.get(self.url("/v1/me")).json()
        assert self.lab.put(
            self.url("/v1/me/signing-key"), json=helpers.key_registration(self.key, me)
        ).ok
        assert self.eval.put(
            self.url("/v1/me/recipient"), json={"recipient": str(self.identity.to_public())}
        ).ok

    def _session(self, who: str) -> requests.Session:
        s = requests.Session()
        s.headers.update(self.server.auth(who))
        return s

    def url(self, path: str) -> str:
        return self.server.url + path

    def upload(self, plaintext: bytes) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
        up = self.lab.post(
            self.url("/v1/uploads"),
            json={"name": "m", "kind": "weights", "share_with": ["agency-a"]},
        ).json()
        data = helpers.age_file(up["recipient"], plaintext)
        m = helpers.manifest(up, data, plaintext)
        return up, data, {"manifest": m, "signature": helpers.sign(m, self.key)}

    def put(self, up: dict[str, Any], n: int, part: bytes) -> requests.Response:
        return self.lab.put(
            self.url(f"/v1/uploads/{up['id']}/parts/{n}"),
            data=part,
            headers={"X-Content-SHA256": helpers.sha(part)},
            timeout=60,
        )

    def complete(self, up: dict[str, Any], body: dict[str, Any]) -> requests.Response:
        return self.lab.post(self.url(f"/v1/uploads/{up['id']}/complete"), json=body, timeout=60)

    def artifact(self, plaintext: bytes) -> tuple[dict[str, Any], str]:
        up, data, body = self.upload(plaintext)
        for n, part in enumerate(helpers.split(data, up["part_size"]), start=1):
            assert self.put(up, n, part).status_code == 200
        artifact = self.complete(up, body).json()
        req = self.eval.post(
            self.url(f"/v1/artifacts/{artifact['id']}/access-requests"), json={"justification": "x"}
        ).json()
        grant = self.lab.post(self.url(f"/v1/access-requests/{req['id']}/approve"), json={}).json()
        return artifact, grant["id"]

    def decrypt(self, data: bytes) -> bytes:
        import pyrage

        return bytes(pyrage.decrypt(data, [self.identity]))


def finish_completion(p: Parties, up: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Send the same completion until it answers its artifact (a stale claim ages in 2 s)."""
    deadline = time.monotonic() + 20
    while True:
        r = p.complete(up, body)
        if r.status_code in (200, 201):
            return dict(r.json())
        assert r.status_code in (409, 503), r.text
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)


# --- the flows ----------------------------------------------------------------------------


def test_kill_during_a_part_upload_then_the_upload_resumes(server: Server) -> None:
    p = Parties(server)
    plaintext = helpers.random_bytes(12 * MIB, seed=12)
    up, data, body = p.upload(plaintext)
    parts = helpers.split(data, up["part_size"])
    assert p.put(up, 1, parts[0]).status_code == 200
    saved = save_checkpoint(server)
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as raw:
        head = (
            f"PUT /v1/uploads/{up['id']}/parts/2 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {server.tokens['lab']}\r\n"
            f"X-Content-SHA256: {helpers.sha(parts[1])}\r\nContent-Length: {len(parts[1])}\r\n\r\n"
        )
        raw.sendall(head.encode() + parts[1][: len(parts[1]) // 2])
        time.sleep(0.3)
        kill9(server)
    restart(server)
    listed = p.lab.get(p.url(f"/v1/uploads/{up['id']}")).json()
    assert [x["number"] for x in listed["parts"]] == [1] and listed["state"] == "open"
    for n, part in enumerate(parts[1:], start=2):
        assert p.put(up, n, part).status_code == 200
    artifact = finish_completion(p, up, body)
    r = p.eval.post(
        p.url(f"/v1/artifacts/{artifact['id']}/access-requests"), json={"justification": "x"}
    )
    p.lab.post(p.url(f"/v1/access-requests/{r.json()['id']}/approve"), json={})
    got = p.eval.get(p.url(f"/v1/artifacts/{artifact['id']}/content"), timeout=60)
    assert p.decrypt(got.content) == plaintext
    assert_log_extends(server, saved)


def test_kill_during_a_completion_then_the_same_completion_finishes(server: Server) -> None:
    """Killed once the upload is claimed (its object assembled, the artifact not yet made)."""
    p = Parties(server)
    plaintext = helpers.random_bytes(11 * MIB, seed=11)
    up, data, body = p.upload(plaintext)
    for n, part in enumerate(helpers.split(data, up["part_size"]), start=1):
        assert p.put(up, n, part).status_code == 200
    saved = save_checkpoint(server)
    thread = threading.Thread(target=lambda: _quietly(lambda: p.complete(up, body)))
    thread.start()
    with held_once(server, f"SELECT state FROM uploads WHERE id = '{up['id']}'", "completing"):
        kill9(server)
    thread.join(30)
    restart(server)
    artifact = finish_completion(p, up, body)
    completed = [
        e for e in entries(server, "upload.complete") if e["details"]["upload"] == up["id"]
    ]
    assert len(completed) == 1 and completed[0]["artifact"] == artifact["id"]
    assert_log_extends(server, saved)
    stored = server.root / "var" / "objects" / "objects" / f"artifacts/{up['id']}.age"
    assert stored.read_bytes() == data


def test_kill_during_a_download_then_it_resumes_and_was_logged(server: Server) -> None:
    p = Parties(server)
    plaintext = helpers.random_bytes(24 * MIB, seed=24)
    artifact, grant = p.artifact(plaintext)
    saved = save_checkpoint(server)
    got = bytearray()
    url = p.url(f"/v1/artifacts/{artifact['id']}/content")
    with p.eval.get(url, stream=True, timeout=60) as r:
        assert r.status_code == 200
        for block in r.iter_content(256 * 1024):
            got += block
            if len(got) >= 2 * MIB:
                kill9(server)
                break
    restart(server)
    logged = [e for e in entries(server, "content.download") if e["grant"] == grant]
    assert len(logged) == 1 and logged[0]["details"]["range"][0] == 0  # before the first byte
    rest = p.eval.get(url, headers={"Range": f"bytes={len(got)}-"}, timeout=60)
    assert rest.status_code == 206
    assert p.decrypt(bytes(got) + rest.content) == plaintext
    assert_log_extends(server, saved)


def test_kill_during_a_withdrawal_then_it_completes(server: Server) -> None:
    """Killed once the shred committed, before its object's deletion is logged."""
    p = Parties(server)
    artifact, _ = p.artifact(helpers.random_bytes(MIB, seed=1))
    assert p.eval.get(p.url(f"/v1/artifacts/{artifact['id']}/content")).status_code == 200
    saved = save_checkpoint(server)
    url = p.url(f"/v1/artifacts/{artifact['id']}")
    thread = threading.Thread(target=lambda: _quietly(lambda: p.lab.delete(url, timeout=30)))
    thread.start()
    with held_once(
        server, f"SELECT state FROM artifacts WHERE id = '{artifact['id']}'", "withdrawn"
    ):
        kill9(server)
    thread.join(30)
    restart(server)
    assert p.lab.get(url).json()["state"] == "withdrawn"
    assert p.eval.get(url + "/content").status_code == 410
    stored = server.root / "var" / "objects" / "objects" / f"artifacts/{artifact['upload']}.age"
    deadline = time.monotonic() + 15
    while not _logged(server, "object.delete", artifact["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)  # the sweeper runs every second
    assert not stored.exists()
    for action in ("artifact.withdraw", "object.delete"):
        assert _logged(server, action, artifact["id"]) == 1, action
    assert_log_extends(server, saved)


def _logged(server: Server, action: str, artifact: str) -> int:
    return len([e for e in entries(server, action) if e["artifact"] == artifact])


def _quietly(call: Any) -> None:
    with contextlib.suppress(requests.RequestException):  # the server was killed under it
        call()


def test_kill_during_a_burst_of_audited_requests_loses_no_acknowledged_entry(
    server: Server,
) -> None:
    p = Parties(server)
    artifact, _ = p.artifact(helpers.random_bytes(64 * 1024, seed=2))
    saved = save_checkpoint(server)
    acknowledged: list[str] = []
    stop = threading.Event()

    def read() -> None:
        s = requests.Session()
        s.headers.update(server.auth("eval"))
        while not stop.is_set():
            try:
                r = s.get(p.url(f"/v1/artifacts/{artifact['id']}"), timeout=10)
            except requests.RequestException:
                return
            if r.status_code == 200:
                acknowledged.append(r.headers["X-Request-Id"])

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    time.sleep(1.0)
    kill9(server)
    stop.set()
    for t in readers:
        t.join(30)
    restart(server)
    assert len(acknowledged) > 20
    logged = {e["request_id"] for e in entries(server, "artifact.read")}
    assert set(acknowledged) <= logged
    assert_log_extends(server, saved)
