"""The edge's pieces without a server: lanes, the rate rule, chunked framing, the loop's phases."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.http import errors as http_errors
from hypothesis import given
from hypothesis import strategies as st

from gateway import edge
from gateway.config import ServerConfig
from gateway.edge_conn import PART_START_BYTES, EdgeConn, Loop
from gateway.worker import SendGuard

LIMITS = edge.EdgeLimits.from_config(ServerConfig(max_json_bytes=4096, max_header_bytes=2048))


@pytest.mark.parametrize(
    ("method", "path", "lane"),
    [
        ("PUT", "/v1/uploads/upl_1/parts/3", edge.UPLOAD),
        ("GET", "/v1/uploads/upl_1/parts/3", edge.REQUEST),
        ("PUT", "/v1/uploads/upl_1/parts/3/x", edge.REQUEST),
        ("GET", "/v1/artifacts/art_1/content", edge.DOWNLOAD),
        ("HEAD", "/download/art_1", edge.DOWNLOAD),
        ("POST", "/v1/artifacts/art_1/content", edge.REQUEST),
        ("GET", "/healthz", edge.REQUEST),
    ],
)
def test_lanes(method: str, path: str, lane: str) -> None:
    assert edge.lane_of(method, path) == lane


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_rule_waits_for_the_grace_period_then_checks_each_window() -> None:
    clock = Clock()
    guard = edge.RateGuard(1000, 2.0, "receive", 5.0, clock)
    clock.now = 1.9
    guard.check(10)  # slow, but still in the grace period
    clock.now = 2.0
    with pytest.raises(edge.Stalled) as info:
        guard.check(0)  # 10 bytes in the first 2 s window: below 1000 bytes/s
    assert (info.value.reason, info.value.direction) == ("min_rate", "receive")
    with pytest.raises(edge.Stalled):
        guard.check(10**9)  # once tripped, it stays tripped


def test_a_fast_start_buys_no_credit_for_a_later_trickle() -> None:
    clock = Clock()
    guard = edge.RateGuard(1000, 1.0, "send", 5.0, clock)
    clock.now = 1.0
    guard.check(10**6)  # a fast first window
    clock.now = 2.0
    with pytest.raises(edge.Stalled):
        guard.check(5)  # the second window on its own is too slow


def test_rate_zero_turns_the_rule_off() -> None:
    clock = Clock()
    guard = edge.RateGuard(0, 1.0, "send", 5.0, clock)
    clock.now = 100.0
    guard.check(0)


def _chunked(pieces: list[bytes], trailers: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.integers(min_value=1, max_value=50),
    st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
)
def test_the_scanner_finds_the_end_of_any_chunked_body(
    pieces: list[bytes], step: int, trailers: bytes
) -> None:
    wire = _chunked(pieces, trailers)
    after = b"GET /next HTTP/1.1\r\n\r\n"
    data = wire + after
    scanner = edge.ChunkedScanner()
    end = None
    for i in range(0, len(data), step):
        end = scanner.feed(data[i : i + step])
        if end is not None:
            assert i + end == len(wire)
            break
    assert end is not None


@pytest.mark.parametrize(
    "wire", [b"zz\r\nabc\r\n", b"3\r\nabcdef\r\n", b"3\nabc\n", b"3\r\nabc\r\n" + b"1" * 9000]
)
def test_the_scanner_refuses_malformed_framing(wire: bytes) -> None:
    with pytest.raises(ValueError):
        edge.ChunkedScanner().feed(wire)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (http_errors.InvalidHeader("CONTENT-LENGTH"), 400),
        (http_errors.LimitRequestLine(10000, 4094), 414),
        (http_errors.LimitRequestHeaders("too many"), 431),
        (http_errors.InvalidRequestMethod("G(T"), 400),
        (http_errors.UnsupportedTransferCoding("zstd"), 501),
        (http_errors.InvalidSchemeHeaders(), 400),
    ],
)
def test_protocol_errors_become_problems(exc: Exception, status: int) -> None:
    problem = edge.protocol_problem(exc)
    assert problem is not None and problem.status == status
    head, body = edge.problem_response(problem).split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body)["status"] == status


def test_other_errors_are_not_protocol_problems() -> None:
    assert edge.protocol_problem(RuntimeError("x")) is None


# -- the loop, on a socket pair -------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.server, self.client = socket.socketpair()
        self.closed: list[EdgeConn] = []
        self.loop = Loop(LIMITS, self.closed.append)
        self.conn = EdgeConn(GunicornConfig(), self.server, ("127.0.0.1", 1), ("", 0), LIMITS)
        self.loop.add(self.conn)

    def send(self, data: bytes) -> bool:
        """The client sends ``data``; whether the loop then hands the connection over."""
        self.client.sendall(data)
        return self.loop.advance(self.conn, None)

    def answer(self) -> tuple[int, dict[str, object]]:
        self.client.settimeout(2)
        raw = self.client.recv(65536)
        head, body = raw.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), json.loads(body)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.server.close()
    harness.client.close()


def test_a_head_in_pieces_is_handed_over_only_when_complete(h: Harness) -> None:
    assert not h.send(b"GET /healthz HTTP/1.1\r\nHo")
    assert not h.send(b"st: x\r\n")
    assert h.send(b"\r\n")
    assert (h.conn.req.method, h.conn.req.path, h.conn.lane) == ("GET", "/healthz", edge.REQUEST)


def test_a_json_body_is_read_whole_before_hand_over(h: Harness) -> None:
    assert not h.send(b"POST /v1/uploads HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
    assert h.send(b"67890GET /next")  # the start of a pipelined request stays buffered
    assert h.conn.req.body.read() == b"1234567890"
    assert h.conn.body_consumed()
    assert h.conn.parser.unreader.take_buffered() == b"GET /next"


def test_a_chunked_json_body_is_decoded_by_gunicorn(h: Harness) -> None:
    assert h.send(b"POST /v1/uploads HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") is False
    assert h.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert h.conn.req.body.read() == b"hello world"


def test_a_declared_body_past_the_limit_is_refused_without_reading(h: Harness) -> None:
    assert not h.send(b"POST /v1/uploads HTTP/1.1\r\nContent-Length: 4097\r\n\r\n")
    status, problem = h.answer()
    assert status == 413 and "4096 bytes" in str(problem["detail"])
    assert h.conn.phase == "linger"


def test_a_chunked_body_past_the_limit_is_refused_at_the_limit(h: Harness) -> None:
    h.send(b"POST /v1/uploads HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert not h.send(b"1000\r\n" + b"a" * 4096 + b"\r\n")
    assert h.answer()[0] == 413
    assert h.loop.buffered == 0


def test_a_part_waits_for_its_first_bytes_then_goes_to_the_upload_lane(h: Harness) -> None:
    length = PART_START_BYTES * 4
    assert not h.send(b"PUT /v1/uploads/u/parts/1 HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length)
    assert not h.send(b"a" * (PART_START_BYTES - 1))
    assert h.send(b"a")
    assert h.conn.lane == edge.UPLOAD


def test_a_small_part_is_read_whole_and_served_as_a_request(h: Harness) -> None:
    assert h.send(b"PUT /v1/uploads/u/parts/1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert h.conn.lane == edge.REQUEST


def test_a_head_past_its_deadline_is_answered_408(h: Harness) -> None:
    h.send(b"GET /healthz HTTP/1.1\r\n")
    h.loop.sweep(h.conn.deadline + 0.01, stopping=False)
    assert h.answer()[0] == 408


def test_a_head_past_max_header_bytes_is_refused(h: Harness) -> None:
    h.send(b"GET /healthz HTTP/1.1\r\n" + b"X-A: " + b"a" * 2100)
    assert h.answer()[0] == 431


def test_a_parse_error_is_answered_from_the_loop(h: Harness) -> None:
    assert not h.send(b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    status, problem = h.answer()
    assert status == 400 and "Content-Length" in str(problem["detail"])


def test_an_idle_kept_alive_connection_is_closed_at_its_deadline(h: Harness) -> None:
    h.conn.idle(b"")
    h.loop.sweep(h.conn.deadline - 0.1, stopping=False)
    assert h.closed == []
    h.loop.sweep(h.conn.deadline + 0.01, stopping=False)
    assert h.closed == [h.conn]


def test_a_pipelined_request_starts_the_next_head_at_once(h: Harness) -> None:
    h.conn.idle(b"GET /next HTTP/1.1\r\n\r\n")
    assert h.conn.phase == "head"
    assert h.loop.advance(h.conn, b"")
    assert h.conn.req.path == "/next"


# -- the send side ----------------------------------------------------------------------


def _pair() -> tuple[socket.socket, socket.socket]:
    server, client = socket.socketpair()
    for s in (server, client):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return server, client


def test_a_response_nobody_reads_is_cut_after_the_send_timeout() -> None:
    server, client = _pair()
    with server, client:
        sender = SendGuard(server, edge.RateGuard(0, 10.0, "send", 0.3))
        start = time.monotonic()
        with pytest.raises(edge.Stalled) as info:
            sender.sendall(b"x" * (4 << 20))
        assert info.value.reason == "timeout" and info.value.direction == "send"
        assert time.monotonic() - start < 5


def test_a_response_read_too_slowly_is_cut_by_the_minimum_rate() -> None:
    server, client = _pair()
    stop = threading.Event()

    def slow_reader() -> None:  # for 3 s at most: a guard without the rate rule then times out
        end = time.monotonic() + 3
        while not stop.wait(0.02) and time.monotonic() < end:
            try:
                client.recv(512)
            except OSError:
                return

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    with server, client:
        sender = SendGuard(server, edge.RateGuard(1 << 20, 0.3, "send", 5.0))
        try:
            with pytest.raises(edge.Stalled) as info:
                sender.sendall(b"x" * (64 << 20))
            assert info.value.reason == "min_rate"
        finally:
            stop.set()
            reader.join(5)


def test_bytes_held_across_connections_are_bounded() -> None:
    limits = dataclasses.replace(LIMITS, max_buffered_bytes=6000)
    pairs = [socket.socketpair() for _ in range(2)]
    loop = Loop(limits, lambda conn: None)
    conns = [EdgeConn(GunicornConfig(), s, ("127.0.0.1", 1), ("", 0), limits) for s, _ in pairs]
    try:
        for conn, (_, client) in zip(conns, pairs, strict=True):
            loop.add(conn)
            client.sendall(
                b"POST /v1/uploads HTTP/1.1\r\nContent-Length: 4000\r\n\r\n" + b"a" * 3500
            )
            loop.advance(conn, None)
        assert conns[0].phase == "body"  # the first is still being read
        assert conns[1].phase == "linger"  # the second went past the budget
        pairs[1][1].settimeout(2)
        assert b" 503 " in pairs[1][1].recv(65536).split(b"\r\n")[0]
        assert loop.buffered == len(conns[0].inbuf)
    finally:
        for server, client in pairs:
            server.close()
            client.close()
