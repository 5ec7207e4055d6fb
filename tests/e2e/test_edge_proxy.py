"""The edge as shipped: ``config/nginx.conf`` with TLS in front of a real ``gateway serve``.

nginx runs the shipped file (:mod:`tests.e2e.nginx` replaces only addresses and paths)
with a throwaway certificate, connecting to the gateway from 127.0.0.2, the one address
in the gateway's ``server.trusted_proxies``; clients connect from 127.0.0.1. Then the
story runs with the real client over HTTPS, trusting the CA through
``REQUESTS_CA_BUNDLE``: push, request, approve, pull, audit verify; and again trusting
it through ``--ca-cert`` alone, while a CA not given is one line naming it. And the edge's
promises are held to: the log keeps the client's address, whatever the client writes in
``X-Forwarded-For``; a JSON body past 1 MiB stops at nginx with problem+json; a part body
streams to the gateway while the client still sends it, and content to the client as it
reads, never held whole by nginx.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import helpers
from tests.e2e import nginx
from tests.e2e.conftest import BIN, Server, start_server, stop_server
from tests.tools import missing

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20
PROXY_ADDRESS = "127.0.0.2"  # nginx's side of its connections to the gateway
CLIENT_ADDRESS = "127.0.0.1"


@dataclass
class Edge:
    server: Server
    proxy: nginx.Nginx
    tls: nginx.Certificate

    @property
    def url(self) -> str:
        return self.proxy.url

    def client(
        self, who: str, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The real ``gateway`` client as ``who``, through nginx, trusting the test CA."""
        home = self.server.root / "home" / who
        home.mkdir(parents=True, exist_ok=True)
        base = {
            **os.environ,
            "GATEWAY_URL": self.url,
            "GATEWAY_TOKEN": self.server.tokens[who],
            "XDG_CONFIG_HOME": str(home),
            "GATEWAY_CONFIG": "",
            "REQUESTS_CA_BUNDLE": str(self.tls.ca),
        }
        return subprocess.run(
            [str(BIN / "gateway"), *args],
            env={**base, **(env or {})},
            cwd=self.server.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def session(self, who: str) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE, if this process has one, wins over verify
        s.verify = str(self.tls.ca)
        s.headers.update(self.server.auth(who))
        return s

    def metric(self, name: str) -> float:
        """One unlabelled sample of the gateway's own ``/metrics`` (asked directly)."""
        text = requests.get(self.server.url + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError(f"{name} is not in /metrics")

    def entries(self) -> list[dict[str, Any]]:
        items = self.session("auditor").get(self.url + "/v1/audit/entries?limit=1000").json()
        return [item["entry"] for item in items["items"]]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if nginx.find_nginx() is None:
        missing("the nginx program is not installed (Debian package nginx; `make deps`)")
    root = tmp_path_factory.mktemp("edge-proxy")
    server = start_server(root, {"GATEWAY_SERVER_TRUSTED_PROXIES": PROXY_ADDRESS})
    try:
        tls = nginx.make_certificate(root / "tls")
        port = nginx.free_port()
        upstream = server.url.removeprefix("http://")
        conf = nginx.render(
            port=port,
            cert=tls,
            upstreams=[upstream],
            run_dir=root / "nginx",
            proxy_bind=PROXY_ADDRESS,
        )
        proxy = nginx.Nginx(root / "nginx", conf, port)
        proxy.start()
        try:
            yield Edge(server, proxy, tls)
        finally:
            proxy.stop()
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def story(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole story through nginx with the real client; what it made."""
    work = tmp_path_factory.mktemp("story")
    plaintext = helpers.random_bytes(24 * MIB + 77, seed=11)
    (work / "weights.bin").write_bytes(plaintext)
    edge.client("lab", "keygen", "--type", "signing", "-o", str(work / "lab.key"))
    artifact = edge.client(
        "lab",
        *("push", str(work / "weights.bin"), "--name", "weights", "--kind", "weights"),
        *("--share-with", "agency-a", "--signing-key", str(work / "lab.key")),
    ).stdout.strip()
    edge.client("eval", "keygen", "--type", "age", "-o", str(work / "eval.agekey"))
    request = edge.client("eval", "request", artifact, "--justification", "evaluation")
    edge.client("lab", "approve", request.stdout.strip(), "--hours", "24")
    edge.client(
        "eval", "pull", artifact, "-o", str(work / "out.bin"), "-i", str(work / "eval.agekey")
    )
    vkey = requests.get(edge.url + "/v1/audit/key", verify=str(edge.tls.ca), timeout=10).text
    (work / "audit.vkey").write_text(vkey.strip() + "\n")
    edge.client("auditor", "audit", "export", "-o", str(work / "log.jsonl"))
    verdict = edge.client(
        "auditor",
        "audit",
        "verify",
        "--key",
        str(work / "audit.vkey"),
        "--file",
        str(work / "log.jsonl"),
    )
    return {
        "artifact": artifact,
        "plaintext": plaintext,
        "pulled": (work / "out.bin").read_bytes(),
        "verdict": verdict.stdout,
    }


def test_the_story_runs_through_nginx_with_tls(story: dict[str, Any], edge: Edge) -> None:
    assert story["pulled"] == story["plaintext"]
    assert story["verdict"].startswith("ok: "), story["verdict"]
    actions = [e["action"] for e in edge.entries()]
    for action in ("upload.complete", "access.approve", "key.release", "content.download"):
        assert action in actions


def test_the_client_refuses_a_gateway_it_cannot_authenticate(edge: Edge) -> None:
    # Without the CA, the certificate is unknown: one line, no traceback, nothing sent.
    done = edge.client("lab", "whoami", env={"REQUESTS_CA_BUNDLE": ""}, check=False)
    assert done.returncode != 0
    assert done.stderr.startswith("gateway: error: "), done.stderr
    said = done.stderr.lower()
    assert "certificate" in said or "tls" in said or "ssl" in said, done.stderr
    assert "Traceback" not in done.stderr


def test_ca_cert_alone_carries_a_push_and_a_pull_through_the_edge(
    story: dict[str, Any], edge: Edge, tmp_path: Path
) -> None:
    # No REQUESTS_CA_BUNDLE: the CA is trusted only because --ca-cert names it.
    alone = {"REQUESTS_CA_BUNDLE": ""}
    # Fresh client directories: this lab signs with a new key, which eval_b has not seen;
    # eval_b, not the story's evaluator, so the story's grant keeps its recipient.
    lab = {**alone, "XDG_CONFIG_HOME": str(tmp_path / "lab-home")}
    ev = {**alone, "XDG_CONFIG_HOME": str(tmp_path / "eval-home")}
    ca = ("--ca-cert", str(edge.tls.ca))
    plaintext = helpers.random_bytes(3 * MIB + 5, seed=12)
    (tmp_path / "small.bin").write_bytes(plaintext)
    edge.client("lab", *ca, "keygen", "--type", "signing", "-o", str(tmp_path / "lab.key"), env=lab)
    artifact = edge.client(
        "lab",
        *ca,
        *("push", str(tmp_path / "small.bin"), "--name", "small", "--kind", "weights"),
        *("--share-with", "agency-b", "--signing-key", str(tmp_path / "lab.key")),
        env=lab,
    ).stdout.strip()
    edge.client(
        "eval_b", *ca, "keygen", "--type", "age", "--yes", "-o", str(tmp_path / "e.agekey"), env=ev
    )
    asked = edge.client("eval_b", *ca, "request", artifact, "--justification", "eval", env=ev)
    edge.client("lab", *ca, "approve", asked.stdout.strip(), "--hours", "24", env=lab)
    pulled = edge.client(
        "eval_b",
        *ca,
        *("pull", artifact, "-o", str(tmp_path / "out.bin"), "-i", str(tmp_path / "e.agekey")),
        env=ev,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "out.bin").read_bytes() == plaintext


def test_an_untrusted_edge_is_one_line_naming_ca_cert(edge: Edge, tmp_path: Path) -> None:
    other = nginx.make_certificate(tmp_path / "other")  # a CA that did not sign the edge's
    for args in (("whoami",), ("--ca-cert", str(other.ca), "whoami")):
        done = edge.client("lab", *args, env={"REQUESTS_CA_BUNDLE": ""}, check=False)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert len(lines) == 2 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("gateway: error: the server's TLS certificate is not trusted")
        assert lines[0].endswith(f": {edge.url}")
        assert lines[1].startswith("gateway: hint: ") and "--ca-cert FILE" in lines[1]


def test_the_log_keeps_the_clients_address_never_the_proxys_or_a_forged_one(
    story: dict[str, Any], edge: Edge
) -> None:
    every = edge.entries()
    assert {e["ip"] for e in every if e["ip"] is not None} == {CLIENT_ADDRESS}
    forged = {"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "http"}
    via_proxy = edge.session("eval").get(
        f"{edge.url}/v1/artifacts/{story['artifact']}", headers=forged
    )
    assert via_proxy.status_code == 200
    direct = requests.get(
        f"{edge.server.url}/v1/artifacts/{story['artifact']}",
        headers={**edge.server.auth("eval"), **forged},
        timeout=10,
    )
    assert direct.status_code == 200
    by_request = {e["request_id"]: e for e in edge.entries()}
    for answer in (via_proxy, direct):
        entry = by_request[answer.headers["X-Request-Id"]]
        assert (entry["action"], entry["ip"]) == ("artifact.read", CLIENT_ADDRESS)


def test_a_json_body_past_one_mib_stops_at_nginx_as_a_problem(edge: Edge) -> None:
    too_large = json.dumps({"name": "x" * (1 << 20), "kind": "weights"}).encode()
    answer = edge.session("lab").post(
        edge.url + "/v1/uploads", data=too_large, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["status"] == 413 and "1 MiB" in answer.json()["detail"]
    # The gateway never saw it: its access log has no such request.
    log = (edge.server.root / "server.log").read_text()
    assert '"POST /v1/uploads" 413' not in log
    # Whatever nginx refuses itself is problem+json too: here a request line past its buffers.
    bad = requests.get(edge.url + "/" + "a" * 20000, verify=str(edge.tls.ca), timeout=10)
    assert bad.status_code in (400, 414)
    assert bad.headers["Content-Type"] == "application/problem+json"


class _PausingBody:
    """A part body of known length that stops after ``pause_at`` bytes until told to go on."""

    def __init__(self, data: bytes, pause_at: int) -> None:
        self.data, self.pause_at, self.pos = data, pause_at, 0
        self.paused, self.resume = threading.Event(), threading.Event()

    def __len__(self) -> int:
        return len(self.data)

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.pause_at and not self.resume.is_set():
            self.paused.set()
            self.resume.wait(30)
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        if self.pos < self.pause_at:
            end = min(end, self.pause_at)
        chunk, self.pos = self.data[self.pos : end], end
        return chunk


def test_a_part_streams_to_the_gateway_while_the_client_still_sends(edge: Edge) -> None:
    lab = edge.session("lab")
    up = lab.post(
        edge.url + "/v1/uploads", json={"name": "s", "kind": "weights", "share_with": ["agency-a"]}
    ).json()
    part = helpers.random_bytes(up["part_size"], seed=3)
    body = _PausingBody(part, pause_at=3 * MIB)
    answers: list[requests.Response] = []

    def send() -> None:
        url = f"{edge.url}/v1/uploads/{up['id']}/parts/1"
        headers = {"X-Content-SHA256": helpers.sha(part)}
        answers.append(lab.put(url, data=body, headers=headers, timeout=60))

    before = edge.metric("gateway_upload_bytes_total")
    sender = threading.Thread(target=send)
    sender.start()
    assert body.paused.wait(30)
    time.sleep(1.0)
    # A buffering proxy would hold all of it until the client had sent the last byte.
    received_while_paused = edge.metric("gateway_upload_bytes_total") - before
    body.resume.set()
    sender.join(60)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert received_while_paused > 1 * MIB


class _SmallWindow(requests.adapters.HTTPAdapter):
    """Connections with a small, fixed receive buffer: a client that stops reading stops TCP."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)]
        super().init_poolmanager(*args, **kwargs)


def test_content_streams_to_the_client_as_it_reads(story: dict[str, Any], edge: Edge) -> None:
    evaluator = edge.session("eval")
    evaluator.mount("https://", _SmallWindow())
    before = edge.metric("gateway_download_bytes_total")
    with evaluator.get(f"{edge.url}/v1/artifacts/{story['artifact']}/content", stream=True) as r:
        assert r.status_code == 200
        size = int(r.headers["Content-Length"])
        chunks = r.iter_content(64 << 10)
        received = len(next(chunks))
        time.sleep(1.5)
        # A buffering proxy would by now have read all of it from the gateway (into a file);
        # streaming, the gateway has sent what the sockets between hold, and waits.
        sent_while_paused = edge.metric("gateway_download_bytes_total") - before
        received += sum(len(c) for c in chunks)
    assert received == size > 20 * MIB
    assert sent_while_paused < size - 8 * MIB, (sent_while_paused, size)
