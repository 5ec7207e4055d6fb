"""Clients that take more than their share, against a real ``gateway serve``.

Each test holds one pattern: bodies of tiny chunks, pipelined requests nobody reads,
buffers filled and held, downloads on spelt-out paths, one lab's trickled parts, a crowd
of kept-alive connections, a worker out of file descriptors. While it holds, the probes
(``/healthz``, an authenticated ``GET /v1/me``, a small part) must each answer within a
second. The server here holds at most 120 connections, so that a crowd can fill it, and
keeps idle ones 10 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests import helpers
from tests.reliability.conftest import (
    EDGE_ENV,
    MIB,
    PROBE_LIMIT,
    RSS_LIMIT_KIB,
    Edge,
    attacker,
    connect,
    lab_upload,
    open_edge,
    probe,
)

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.slow]
MAX_CONNECTIONS = 120


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    env = {
        **EDGE_ENV,
        "GATEWAY_SERVER_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "GATEWAY_SERVER_IDLE_TIMEOUT_SECONDS": "10",
    }
    yield from open_edge(tmp_path_factory, env)


def head(method: str, path: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: gateway", *headers, "", ""]).encode()


def probes_hold(edge: Edge, seconds: float) -> list[dict[str, float]]:
    """Probe for ``seconds``; every call must have answered in time."""
    results, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        results.append(probe(edge))
        time.sleep(0.2)
    slow = [r for r in results if max(r.values()) > PROBE_LIMIT]
    assert not slow, f"probes slower than {PROBE_LIMIT}s: {slow} of {len(results)}"
    return results


def read_answer(s: socket.socket) -> tuple[int, bytes]:
    """The status and body of the next whole answer on ``s``."""
    got = b""
    while b"\r\n\r\n" not in got and (more := s.recv(65536)):
        got += more
    head_bytes, _, body = got.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:"))
    while len(body) < length and (more := s.recv(65536)):
        body += more
    return int(lines[0].split()[1]), body


def status_of(s: socket.socket, within: float = 10) -> int:
    """The status the server answered on ``s`` (0: none before it closed)."""
    s.settimeout(within)
    got = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in got and (more := s.recv(4096)):
            got += more
    return int(got.split()[1]) if got.startswith(b"HTTP/1.1 ") else 0


class Senders:
    """``n`` threads each calling ``fn`` until stopped."""

    def __init__(self, n: int, fn: object) -> None:
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(fn,), daemon=True) for _ in range(n)
        ]
        for t in self.threads:
            t.start()

    def _run(self, fn: object) -> None:
        while not self.stop.is_set():
            fn()  # type: ignore[operator]

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_bodies_of_tiny_chunks_are_refused_at_little_cost(edge: Edge) -> None:
    """1-byte chunks up to the JSON limit: each is refused 400 and costs the loop little."""
    body = b"1\r\nx\r\n" * ((MIB - 64) // 6) + b"0\r\n\r\n"
    request = head("POST", "/v1/uploads", "Transfer-Encoding: chunked") + body
    statuses: list[int] = []
    source = attacker()

    def send() -> None:
        with connect(edge, source, timeout=10) as s:
            with contextlib.suppress(OSError):
                s.sendall(request)
            statuses.append(status_of(s))

    senders = Senders(4, send)
    try:
        probes_hold(edge, 3)
    finally:
        senders.join()
    assert statuses and set(statuses) <= {400, 0} and statuses.count(400) >= len(statuses) // 2


def test_pipelined_requests_nobody_reads_hold_no_thread(edge: Edge) -> None:
    before = edge.metric("gateway_edge_closed_connections_total", reason="send_timeout")
    source, socks = attacker(), []
    for _ in range(16):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((source, 0))
        s.connect((edge.host, edge.port))
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.send(head("GET", "/v1/openapi.json") * 400)
        socks.append(s)
    try:
        probes_hold(edge, 3)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            cut = edge.metric("gateway_edge_closed_connections_total", reason="send_timeout")
            if cut - before >= len(socks):
                break
            time.sleep(0.5)
        assert cut - before >= len(socks)  # each cut by the loop once it stopped taking answers
    finally:
        for s in socks:
            s.close()


def test_an_upload_slower_than_the_grace_period_gets_its_whole_answer(edge: Edge) -> None:
    """The answer's minimum rate counts from its first byte, not from the request's."""
    data = helpers.random_bytes(512 << 10, seed=4)
    upload = lab_upload(edge.server, len(data))
    with connect(edge, "127.0.0.1", timeout=20) as s:
        s.sendall(
            head(
                "PUT",
                f"/v1/uploads/{upload['id']}/parts/1",
                f"Authorization: Bearer {edge.server.tokens['lab']}",
                f"X-Content-SHA256: {helpers.sha(data)}",
                f"Content-Length: {len(data)}",
            )
        )
        start = time.monotonic()
        for i in range(0, len(data), 12 << 10):  # 120 KiB/s: above the minimum rate, for 4 s
            s.sendall(data[i : i + (12 << 10)])
            time.sleep(0.1)
        assert time.monotonic() - start > 3  # longer than the 2 s grace period
        status, body = read_answer(s)
    assert status == 200 and json.loads(body)["number"] == 1, body


def test_held_request_bodies_do_not_starve_newcomers(edge: Edge) -> None:
    """80 bodies of 1 MiB less a byte, from 10 addresses: past the loop's 64 MiB, the
    largest holders give way, never the probes' small requests."""
    opening = head(
        "POST", "/v1/uploads", "Content-Type: application/json", f"Content-Length: {MIB}"
    )
    socks = []
    for _ in range(10):
        source = attacker()
        for _ in range(8):
            s = connect(edge, source)
            with contextlib.suppress(OSError):
                s.sendall(opening + b"x" * (MIB - 1))
            socks.append(s)
    try:
        probes_hold(edge, 2)
        statuses = [status_of(s, 10) for s in socks]
        assert statuses.count(503) + statuses.count(429) >= 8, statuses
        assert set(statuses) <= {503, 429, 408, 0}, statuses
    finally:
        for s in socks:
            s.close()
    assert edge.peak_rss_kib() < RSS_LIMIT_KIB


def _signed_path(edge: Edge) -> str:
    r = requests.post(
        f"{edge.server.url}/v1/artifacts/{edge.artifact}/download-url",
        headers=edge.server.auth("eval"),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    url = urlsplit(r.json()["url"])
    return url.path.replace("/download/", "/%64ownload/") + "?" + url.query


@pytest.mark.parametrize("spelling", ["content", "signed"])
def test_downloads_spelt_otherwise_stay_on_the_download_lane(edge: Edge, spelling: str) -> None:
    if spelling == "content":
        path = f"/v1/artifacts/{edge.artifact}/%63ontent"
    else:
        path = _signed_path(edge)
    stop = threading.Event()
    source, statuses = attacker(), []

    def slow_reader() -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((source, 0))
        s.connect((edge.host, edge.port))
        with s:
            auth = f"Authorization: Bearer {edge.server.tokens['eval']}"
            s.sendall(head("GET", path, *([auth] if spelling == "content" else [])))
            statuses.append(status_of(s))
            while not stop.wait(0.1):
                with contextlib.suppress(OSError):
                    if not s.recv(4000):
                        return

    readers = [threading.Thread(target=slow_reader, daemon=True) for _ in range(8)]
    for t in readers:
        t.start()
    try:
        time.sleep(0.5)
        probes_hold(edge, 3)
    finally:
        stop.set()
        for t in readers:
            t.join(10)
    assert 200 in statuses, statuses  # they were served, slowly, by download threads


def test_get_bodies_are_refused_before_they_are_held(edge: Edge) -> None:
    """GETs of content carrying 1 MiB bodies each: refused 400, and the worker keeps no memory."""
    request = head("GET", "/v1/artifacts/whatever/content", f"Content-Length: {MIB}")
    socks = []
    for _ in range(3):
        source = attacker()
        for _ in range(30):
            s = connect(edge, source)
            with contextlib.suppress(OSError):
                s.sendall(request + b"x" * MIB)
            socks.append(s)
    try:
        statuses = [status_of(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert statuses.count(400) >= len(socks) - 5, statuses
    assert edge.peak_rss_kib() < RSS_LIMIT_KIB
    assert max(probe(edge).values()) <= PROBE_LIMIT


def test_one_lab_trickling_parts_leaves_another_labs_part_a_thread(edge: Edge) -> None:
    """Lab A sends 4 parts just above the minimum rate; lab B's part is stored at once."""
    stop = threading.Event()
    source = attacker()

    def trickle() -> None:
        upload = lab_upload(edge.server, 5 * MIB)
        with connect(edge, source, timeout=10) as s:
            s.sendall(
                head(
                    "PUT",
                    f"/v1/uploads/{upload['id']}/parts/1",
                    f"Authorization: Bearer {edge.server.tokens['lab']}",
                    "X-Content-SHA256: " + "0" * 64,
                    f"Content-Length: {5 * MIB}",
                )
                + b"x" * (64 << 10)
            )
            while not stop.wait(0.1):  # 80 KiB/s, above the 64 KiB/s minimum
                with contextlib.suppress(OSError):
                    s.sendall(b"x" * (8 << 10))

    hogs = [threading.Thread(target=trickle, daemon=True) for _ in range(4)]
    for t in hogs:
        t.start()
    try:
        time.sleep(1.5)
        data = helpers.random_bytes(MIB, seed=8)
        upload = lab_upload(edge.server, len(data), who="lab_b")
        start = time.monotonic()
        r = requests.put(
            f"{edge.server.url}/v1/uploads/{upload['id']}/parts/1",
            data=data,
            headers={**edge.server.auth("lab_b"), "X-Content-SHA256": helpers.sha(data)},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert time.monotonic() - start < 5
    finally:
        stop.set()
        for t in hogs:
            t.join(10)


def test_an_address_holds_at_most_its_share_of_connections(edge: Edge) -> None:
    greedy = attacker()
    mine = [connect(edge, greedy) for _ in range(64)]
    try:
        with connect(edge, greedy) as extra:
            assert status_of(extra, 5) == 429
        with connect(edge, attacker()) as other:  # another address still gets in
            other.sendall(head("GET", "/healthz"))
            assert status_of(other, 5) == 200
    finally:
        for s in mine:
            s.close()


def test_a_full_worker_makes_room_by_closing_an_idle_connection(edge: Edge) -> None:
    """The worker's 120 connections, each kept alive after one request: new clients still
    get in, in place of the connection idle the longest."""
    before = edge.metric("gateway_edge_closed_connections_total", reason="evicted")
    crowd = []
    try:
        for source in (attacker(), attacker(), attacker()):
            for _ in range(MAX_CONNECTIONS // 3):
                s = connect(edge, source)
                s.sendall(head("GET", "/healthz"))
                assert read_answer(s)[0] == 200
                crowd.append(s)
        results = [probe(edge) for _ in range(3)]
        assert max(max(r.values()) for r in results) <= PROBE_LIMIT, results
    finally:
        for s in crowd:
            s.close()
    assert edge.metric("gateway_edge_closed_connections_total", reason="evicted") > before


def test_a_part_is_invited_to_send_its_body_only_once_accepted(edge: Edge) -> None:
    data = helpers.random_bytes(256 << 10, seed=11)
    upload = lab_upload(edge.server, len(data))
    part = f"/v1/uploads/{upload['id']}/parts/1"
    expect = [
        "Expect: 100-continue",
        f"Content-Length: {len(data)}",
        f"X-Content-SHA256: {helpers.sha(data)}",
    ]
    with connect(edge, "127.0.0.1") as s:
        s.sendall(head("PUT", part, *expect))  # anonymous: refused, never invited
        assert status_of(s) == 401
    with connect(edge, "127.0.0.1") as s:
        s.sendall(head("PUT", part, f"Authorization: Bearer {edge.server.tokens['lab']}", *expect))
        assert status_of(s) == 100
        s.sendall(data)
        got = b""
        while b"HTTP/1.1 200" not in got and (more := s.recv(65536)):
            got += more
        assert b"HTTP/1.1 200" in got, got
    assert [p["number"] for p in edge.stored_parts(str(upload["id"]))] == [1]


def test_a_worker_out_of_file_descriptors_keeps_serving(edge: Edge) -> None:
    """Room for 40 more files, 100 idle connections: the worker pauses accepting, never dies."""
    worker = edge.worker_pids()[0]
    old = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    before = edge.metric("gateway_edge_accept_pauses_total")
    in_use = len(os.listdir(f"/proc/{worker}/fd"))
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (in_use + 40, old[1]))
    socks = []
    try:
        for source in (attacker(), attacker()):
            for _ in range(50):
                with contextlib.suppress(OSError):
                    socks.append(connect(edge, source, timeout=2))
        time.sleep(1)
        for s in socks:
            s.close()
        time.sleep(1)
        assert max(probe(edge).values()) <= PROBE_LIMIT
    finally:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, old)
        for s in socks:
            s.close()
    assert edge.worker_pids() == [worker]
    assert edge.metric("gateway_edge_accept_pauses_total") > before
