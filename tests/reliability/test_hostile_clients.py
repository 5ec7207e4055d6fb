"""Hostile clients against a real ``gateway serve``: the server keeps answering everyone else.

Each attack holds 64 connections from one client address. While it runs, ``/healthz``,
an authenticated ``GET /v1/me`` and a small part upload must each answer within a
second; afterwards the server must have closed every attacking connection itself, kept
nothing of a stalled part, and its worker's peak RSS must have stayed under 200 MiB.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable

import pytest
import requests

from tests import helpers
from tests.reliability.conftest import (
    MIB,
    PROBE_LIMIT,
    RSS_LIMIT_KIB,
    Edge,
    attacker,
    connect,
    probe,
)

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.slow]
CROWD = 64


class Crowd:
    """``CROWD`` raw connections from one new client address, each opened with the same bytes."""

    def __init__(self, edge: Edge, opening: bytes, n: int = CROWD) -> None:
        source = attacker()
        self.socks = [connect(edge, source) for _ in range(n)]
        for s in self.socks:
            s.sendall(opening)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def trickle(self, every: float = 0.25) -> None:
        """Send one more byte on every connection each ``every`` seconds, until stopped."""

        def run() -> None:
            while not self.stop.wait(every):
                for s in self.socks:
                    with contextlib.suppress(OSError):
                        s.send(b"a")

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def closed_by_server(self, within: float) -> int:
        """How many connections the server closes within ``within`` seconds (never reading them)."""
        deadline = time.monotonic() + within
        closed = 0
        for s in self.socks:
            try:
                while True:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    if not s.recv(1 << 20):
                        break
                closed += 1
            except ConnectionResetError:
                closed += 1
            except OSError:
                pass
        return closed

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
        for s in self.socks:
            s.close()


def probes_during(edge: Edge, rounds: int = 3, pause: float = 0.3) -> list[dict[str, float]]:
    """Probe ``rounds`` times while an attack holds; every call must answer in time."""
    results = []
    for _ in range(rounds):
        results.append(probe(edge))
        time.sleep(pause)
    slow = [r for r in results if max(r.values()) > PROBE_LIMIT]
    assert not slow, f"probes slower than {PROBE_LIMIT}s during the attack: {results}"
    return results


def report(edge: Edge, what: str, n: int, results: list[dict[str, float]], cut: int) -> None:
    """One row of the README's reliability table (shown with ``pytest -s``)."""
    slowest = max(max(r.values()) for r in results)
    print(
        f"\n| {what} | {n} | {len(results) * len(results[0])} answered,"
        f" slowest {slowest * 1000:.0f} ms | {cut} of {n} | {edge.peak_rss_kib() // 1024} MiB |"
    )


def held_attack(edge: Edge, what: str, opening: bytes, trickle: bool, cut_within: float) -> None:
    """Open the crowd, probe while it holds, then check the server closed all of it."""
    crowd = Crowd(edge, opening)
    try:
        if trickle:
            crowd.trickle()
        results = probes_during(edge)
        crowd.stop.set()
        cut = crowd.closed_by_server(cut_within)
        report(edge, what, CROWD, results, cut)
        assert cut == CROWD
    finally:
        crowd.close()
    assert max(probe(edge).values()) <= PROBE_LIMIT
    assert edge.peak_rss_kib() < RSS_LIMIT_KIB


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", *headers, "", ""]
    return "\r\n".join(lines).encode()


def part_head(edge: Edge, authenticated: bool, number: int = 1) -> bytes:
    auth = [f"Authorization: Bearer {edge.server.tokens['lab']}"] if authenticated else []
    return head(
        "PUT",
        f"/v1/uploads/{edge.victim_upload}/parts/{number}",
        *auth,
        f"Content-Length: {edge.victim_part_size}",
        "X-Content-SHA256: " + "0" * 64,
    )


def test_half_sent_request_heads(edge: Edge) -> None:
    before = edge.metric("gateway_edge_closed_connections_total", reason="header_timeout")
    opening = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Pad: "
    held_attack(edge, "half a request head, then silence", opening, trickle=False, cut_within=6)
    after = edge.metric("gateway_edge_closed_connections_total", reason="header_timeout")
    assert after - before >= CROWD


def test_trickled_request_heads(edge: Edge) -> None:
    opening = b"GET /healthz HTTP/1.1\r\nX-Pad: "
    held_attack(edge, "a request head, 4 bytes/s", opening, trickle=True, cut_within=6)


def _cut_slow_bodies(edge: Edge) -> float:
    return sum(
        edge.metric("gateway_edge_closed_connections_total", reason=reason)
        for reason in ("body_timeout", "min_rate")
    )


def test_trickled_json_bodies(edge: Edge) -> None:
    before = _cut_slow_bodies(edge)
    opening = head(
        "PUT", "/v1/me/recipient", "Content-Length: 1000", "Content-Type: application/json"
    )
    opening += b'{"recipient": "'
    held_attack(edge, "a 1000-byte JSON body, 4 bytes/s", opening, trickle=True, cut_within=6)
    assert _cut_slow_bodies(edge) - before >= CROWD


@pytest.mark.parametrize("authenticated", [True, False], ids=["lab", "anonymous"])
def test_trickled_part_bodies_keep_nothing(edge: Edge, authenticated: bool) -> None:
    before = edge.metric("gateway_edge_closed_connections_total", reason="min_rate")
    who = "lab" if authenticated else "anonymous"
    what = f"a 5 MiB part body, 4 bytes/s ({who})"
    held_attack(edge, what, part_head(edge, authenticated), trickle=True, cut_within=6)
    assert edge.stored_parts(edge.victim_upload) == []
    after = edge.metric("gateway_edge_closed_connections_total", reason="min_rate")
    assert after - before >= CROWD


def test_part_bodies_that_stall_after_a_fast_start_keep_nothing(edge: Edge) -> None:
    """Past the first bytes a part is read by an upload thread: a stall there is cut too.

    The lab holds at most its share of the upload threads; each stall is answered and
    counted in the metrics.
    """
    before = _cut_slow_bodies(edge)
    crowd = Crowd(edge, part_head(edge, True) + helpers.random_bytes(256 << 10), n=8)
    try:
        results = probes_during(edge)
        firsts = [_first_line(s, 15) for s in crowd.socks]
        report(edge, "a 5 MiB part body: 256 KiB, then silence (lab)", 8, results, len(firsts))
        statuses = [int(f.split()[1]) for f in firsts]
        # 408, the client may send it again; never 400, as if the body had been short
        assert statuses.count(408) >= 2 and set(statuses) <= {408, 429, 503}, firsts
    finally:
        crowd.close()
    assert _cut_slow_bodies(edge) - before >= 2
    assert edge.stored_parts(edge.victim_upload) == []
    assert max(probe(edge).values()) <= PROBE_LIMIT
    assert edge.peak_rss_kib() < RSS_LIMIT_KIB


def _closed(edge: Edge, reason: str) -> float:
    return edge.metric("gateway_edge_closed_connections_total", reason=reason)


def _first_line(s: socket.socket, within: float) -> bytes:
    """The status line the server answered ``s`` with (b"" if none before it closed)."""
    s.settimeout(within)
    got = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in got and (more := s.recv(4096)):
            got += more
    return got.split(b"\r\n")[0]


def test_downloads_that_are_never_read(edge: Edge) -> None:
    """One evaluator's 64 downloads, never read.

    Those within its share of the download threads are cut at the send timeout, the
    rest refused once they waited the queue timeout for one of its own to end.
    """
    reasons = ("send_timeout", "min_rate", "queue_timeout")
    before = {reason: _closed(edge, reason) for reason in reasons}
    opening = head(
        "GET",
        f"/v1/artifacts/{edge.artifact}/content",
        f"Authorization: Bearer {edge.server.tokens['eval']}",
    )
    crowd = Crowd(edge, opening)
    for s in crowd.socks:  # the smallest receive window, so the server's sends block soon
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        results = probes_during(edge, rounds=4)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # never reading: cut, or refused after the queue wait
            ended = sum(_closed(edge, reason) - before[reason] for reason in before)
            if ended >= CROWD:
                break
            time.sleep(0.5)
        report(edge, "a 24 MiB download, never read", CROWD, results, int(ended))
        assert ended >= CROWD and _closed(edge, "send_timeout") - before["send_timeout"] >= 2
    finally:
        crowd.close()
    # a reader that does read still gets the whole artifact
    r = requests.get(
        f"{edge.server.url}/v1/artifacts/{edge.artifact}/content",
        headers=edge.server.auth("eval"),
        timeout=30,
    )
    assert r.status_code == 200 and len(r.content) == edge.artifact_size
    assert edge.peak_rss_kib() < RSS_LIMIT_KIB


def _blast(edge: Edge, opening: bytes, piece: bytes, total: int, sent: list[int]) -> None:
    """Send ``opening`` then ``piece`` until ``total`` bytes or the server cuts the connection."""
    with connect(edge, attacker(), timeout=10) as s:
        n = 0
        try:
            s.sendall(opening)
            while n < total:
                s.sendall(piece)
                n += len(piece)
        except OSError:
            pass
        sent.append(n)


GIB = 1 << 30
CHUNK = b"100000\r\n" + b"a" * MIB + b"\r\n"


@pytest.mark.parametrize(
    ("framing", "piece"),
    [("Transfer-Encoding: chunked", CHUNK), (f"Content-Length: {4 * GIB}", b"a" * MIB)],
    ids=["chunked", "content-length"],
)
def test_gigabyte_json_bodies_are_refused_unread(edge: Edge, framing: str, piece: bytes) -> None:
    opening = head(
        "PUT",
        "/v1/me/recipient",
        f"Authorization: Bearer {edge.server.tokens['eval']}",
        "Content-Type: application/json",
        framing,
    )
    before = edge.metric("gateway_edge_too_large_bodies_total")
    shed_before = edge.metric("gateway_edge_closed_connections_total", reason="shed")
    sent: list[int] = []
    blasters = [
        threading.Thread(target=_blast, args=(edge, opening, piece, 4 * GIB, sent), daemon=True)
        for _ in range(CROWD)
    ]
    for t in blasters:
        t.start()
    results = probes_during(edge, rounds=2, pause=0.1)
    for t in blasters:
        t.join(30)
    refused = int(edge.metric("gateway_edge_too_large_bodies_total") - before)
    report(
        edge, f"a 4 GiB JSON body ({framing.split(':')[0]}), sent at once", CROWD, results, refused
    )
    assert len(sent) == CROWD
    # each was cut after a few MiB (the limit, what the socket buffers took), not gigabytes
    assert max(sent) < 128 * MIB, sorted(sent)[-5:]
    shed = edge.metric("gateway_edge_closed_connections_total", reason="shed")
    assert refused + shed - shed_before >= CROWD
    assert edge.peak_rss_kib() < RSS_LIMIT_KIB


def exchange(edge: Edge, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a new connection; the status, headers and body of the answer."""
    with socket.create_connection((edge.host, edge.port), timeout=10) as s:
        s.sendall(data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            got = s.recv(65536)
            assert got, f"connection closed after {raw!r}"
            raw += got
        head_bytes, body = raw.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length:
            got = s.recv(65536)
            assert got
            body += got
        return int(lines[0].split()[1]), headers, body


def _many_headers() -> bytes:
    return head("GET", "/healthz", *(f"X-H{i}: v" for i in range(200)))


PROTOCOL_ERRORS: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "bad content-length": (
        lambda: head("POST", "/v1/uploads", "Content-Length: abc"),
        400,
        "Content-Length",
    ),
    "negative content-length": (
        lambda: head("POST", "/v1/uploads", "Content-Length: -5"),
        400,
        "Content-Length",
    ),
    "two content-lengths": (
        lambda: head("POST", "/v1/uploads", "Content-Length: 1", "Content-Length: 2"),
        400,
        "Content-Length",
    ),
    "chunked and content-length": (
        lambda: head("POST", "/v1/uploads", "Content-Length: 5", "Transfer-Encoding: chunked"),
        400,
        "Content-Length",
    ),
    "10 KB request line": (lambda: head("GET", "/" + "a" * 10_000), 414, "request line"),
    "200 headers": (_many_headers, 431, "header"),
    "invalid method": (lambda: head("G(T", "/healthz"), 400, "method"),
    "unsupported transfer coding": (
        lambda: head("POST", "/v1/uploads", "Transfer-Encoding: zstd"),
        501,
        "Transfer-Encoding",
    ),
    "malformed chunk": (
        lambda: head("POST", "/v1/uploads", "Transfer-Encoding: chunked") + b"zz\r\nabc\r\n",
        400,
        "chunk",
    ),
    "chunked body past the limit": (
        lambda: head("PUT", "/v1/me/recipient", "Transfer-Encoding: chunked") + CHUNK * 2,
        413,
        "larger than",
    ),
    "content-length past the limit": (
        lambda: head("PUT", "/v1/me/recipient", f"Content-Length: {2 * MIB}") + b"a" * MIB,
        413,
        "larger than",
    ),
    "head past max_header_bytes": (
        lambda: head("GET", "/healthz", *(f"X-H{i}: {'v' * 4000}" for i in range(10))),
        431,
        "request head",
    ),
}


@pytest.mark.parametrize("case", PROTOCOL_ERRORS, ids=list(PROTOCOL_ERRORS))
def test_protocol_errors_are_problem_json(edge: Edge, case: str) -> None:
    make, status, word = PROTOCOL_ERRORS[case]
    got, headers, body = exchange(edge, make())
    assert got == status, body
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and word.lower() in problem["detail"].lower()


def test_a_part_body_left_unread_is_answered_connection_close(edge: Edge) -> None:
    """The anonymous part is refused before its body is read: the client is told to hang up."""
    status, headers, body = exchange(edge, part_head(edge, authenticated=False) + b"a" * MIB)
    assert status == 401 and headers["Connection"] == "close", headers
    assert edge.stored_parts(edge.victim_upload) == []


def test_distinct_methods_do_not_grow_metrics(edge: Edge) -> None:
    def size() -> int:
        return len(requests.get(edge.server.url + "/metrics", timeout=5).content)

    exchange(edge, head("ZZZZZZ", "/healthz", "Connection: close"))  # every series exists now
    before = size()
    names = [
        f"{chr(65 + i // 676)}{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}QQ" for i in range(3000)
    ]
    for batch in range(0, len(names), 100):
        with socket.create_connection((edge.host, edge.port), timeout=10) as s:
            s.sendall(b"".join(head(m, "/healthz") for m in names[batch : batch + 100]))
            s.sendall(head("GET", "/healthz", "Connection: close"))
            got = b""
            while chunk := s.recv(1 << 20):
                got += chunk
            assert got.count(b"HTTP/1.1 405") == 100
    text = requests.get(edge.server.url + "/metrics", timeout=5).text
    assert "AAAQQ" not in text and 'method="OTHER"' in text
    assert size() - before < 200  # only counter values changed, no new series
