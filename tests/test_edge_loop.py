"""The event loop's phases on socket pairs: reading, budgets, queues, answers, deadlines."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator

import pytest
from gunicorn.config import Config as GunicornConfig

from gateway import edge
from gateway.config import ServerConfig
from gateway.edge_conn import EdgeConn
from gateway.edge_lanes import Lanes
from gateway.edge_loop import PART_START_BYTES, Loop

LIMITS = edge.EdgeLimits.from_config(ServerConfig(max_json_bytes=4096, max_header_bytes=2048))


class Harness:
    """One loop and its connections, each a socket pair (the client end is ours)."""

    def __init__(self, limits: edge.EdgeLimits = LIMITS) -> None:
        self.limits = limits
        self.closed: list[EdgeConn] = []
        self.loop = Loop(limits, self.closed.append)
        self.clients: list[socket.socket] = []
        self.conn, self.client = self.connect()

    def connect(self, address: str = "127.0.0.1") -> tuple[EdgeConn, socket.socket]:
        server, client = socket.socketpair()
        self.clients += [server, client]
        conn = EdgeConn(GunicornConfig(), server, (address, 1), ("", 0), self.limits)
        assert self.loop.admit(conn)
        return conn, client

    def send(
        self, data: bytes, conn: EdgeConn | None = None, client: socket.socket | None = None
    ) -> bool:
        """The client sends ``data``; whether the loop then hands the connection over."""
        (client or self.client).sendall(data)
        return self.loop.advance(conn or self.conn, None)

    def answer(self, client: socket.socket | None = None) -> tuple[int, dict[str, object]]:
        client = client or self.client
        client.settimeout(2)
        raw = client.recv(65536)
        head, body = raw.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), json.loads(body)

    def close(self) -> None:
        for s in self.clients:
            s.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


POST = b"POST /v1/uploads HTTP/1.1\r\n"


def test_a_head_in_pieces_is_handed_over_only_when_complete(h: Harness) -> None:
    assert not h.send(b"GET /healthz HTTP/1.1\r\nHo")
    assert not h.send(b"st: x\r\n")
    assert h.send(b"\r\n")
    assert (h.conn.req.method, h.conn.req.path, h.conn.lane) == ("GET", "/healthz", edge.REQUEST)


def test_a_json_body_is_read_whole_before_hand_over(h: Harness) -> None:
    assert not h.send(POST + b"Content-Length: 10\r\n\r\n12345")
    assert h.send(b"67890GET /next")  # the start of a pipelined request stays buffered
    h.loop.handover(h.conn)
    assert h.conn.req.body.read() == b"1234567890"
    assert h.conn.body_consumed()
    assert h.conn.parser.unreader.take_buffered() == b"GET /next"


def test_a_chunked_json_body_is_decoded_in_the_loop(h: Harness) -> None:
    assert h.send(POST + b"Transfer-Encoding: chunked\r\n\r\n") is False
    assert h.send(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET")
    assert h.conn.req.body.read() == b"hello world"
    assert h.conn.req.trailers == [("X-T", "1")]
    assert bytes(h.conn.inbuf) == b"GET"


def test_a_chunked_body_of_tiny_chunks_is_refused_early(h: Harness) -> None:
    h.send(POST + b"Transfer-Encoding: chunked\r\n\r\n")
    assert not h.send(b"1\r\nx\r\n" * 600)
    status, problem = h.answer()
    assert status == 400 and "average at least" in str(problem["detail"])
    assert h.loop.budget.total == 0


def test_a_declared_body_past_the_limit_is_refused_without_reading(h: Harness) -> None:
    assert not h.send(POST + b"Content-Length: 4097\r\n\r\n")
    status, problem = h.answer()
    assert status == 413 and "4096 bytes" in str(problem["detail"])
    assert h.conn.phase == "linger"


def test_a_chunked_body_past_the_limit_is_refused_at_the_limit(h: Harness) -> None:
    h.send(POST + b"Transfer-Encoding: chunked\r\n\r\n")
    assert not h.send(b"1001\r\n" + b"a" * 100)  # the size alone says it passes the limit
    assert h.answer()[0] == 413
    assert h.loop.budget.total == 0


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 5\r\n\r\nabcde", b"Transfer-Encoding: chunked\r\n\r\n"]
)
def test_a_get_with_a_body_is_refused(h: Harness, framing: bytes) -> None:
    assert not h.send(b"GET /v1/artifacts/a/content HTTP/1.1\r\n" + framing)
    status, problem = h.answer()
    assert status == 400 and "must not carry a body" in str(problem["detail"])


def test_a_part_waits_for_its_first_bytes_then_goes_to_the_upload_lane(h: Harness) -> None:
    length = PART_START_BYTES * 4
    assert not h.send(b"PUT /v1/uploads/u/parts/1 HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length)
    assert not h.send(b"a" * (PART_START_BYTES - 1))
    assert h.send(b"a")
    assert h.conn.lane == edge.UPLOAD


def test_a_part_that_waits_for_100_continue_gets_it_only_from_the_application(h: Harness) -> None:
    head = (
        b"PUT /v1/uploads/u/parts/1 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n"
    )
    assert h.send(head)  # to its thread at once, unread: the application decides
    assert h.conn.lane == edge.UPLOAD and h.conn.continue_pending
    assert not h.conn.req._expected_100_continue  # gunicorn must not send it either
    h.client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        h.client.recv(100)


def test_a_small_part_is_read_whole_and_served_as_a_request(h: Harness) -> None:
    assert h.send(b"PUT /v1/uploads/u/parts/1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert h.conn.lane == edge.REQUEST


def test_a_head_past_its_deadline_is_answered_408(h: Harness) -> None:
    h.send(b"GET /healthz HTTP/1.1\r\n")
    h.loop.sweep(h.conn.deadline + 0.01, stopping=False)
    assert h.answer()[0] == 408


def test_a_json_body_below_the_minimum_rate_is_cut_before_its_deadline(h: Harness) -> None:
    assert not h.send(POST + b"Content-Length: 1000\r\n\r\n{")
    guard = h.conn.guard
    assert guard is not None
    late = guard.window_start + LIMITS.grace + 0.01  # one byte in the whole grace period
    guard.clock = lambda: late
    assert late < h.conn.deadline
    h.loop.sweep(late, stopping=False)
    status, problem = h.answer()
    assert status == 408 and "slower than" in str(problem["detail"])


def test_a_head_past_max_header_bytes_is_refused(h: Harness) -> None:
    h.send(b"GET /healthz HTTP/1.1\r\n" + b"X-A: " + b"a" * 2100)
    assert h.answer()[0] == 431


def test_a_parse_error_is_answered_from_the_loop(h: Harness) -> None:
    assert not h.send(b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    status, problem = h.answer()
    assert status == 400 and "Content-Length" in str(problem["detail"])


def test_an_idle_kept_alive_connection_is_closed_at_its_deadline(h: Harness) -> None:
    h.conn.idle()
    h.loop.sweep(h.conn.deadline - 0.1, stopping=False)
    assert h.closed == []
    h.loop.sweep(h.conn.deadline + 0.01, stopping=False)
    assert h.closed == [h.conn]


def test_the_connection_idle_longest_makes_room_for_a_new_one(h: Harness) -> None:
    second, _ = h.connect()
    h.conn.idle()
    second.idle()
    busy, _ = h.connect()
    assert h.loop.evict_idle()
    assert h.closed == [h.conn]
    assert h.loop.evict_idle() and h.closed == [h.conn, second]
    assert not h.loop.evict_idle()  # the one still reading its head stays
    assert busy in h.loop.conns


# -- answers the loop writes ------------------------------------------------------------


def test_a_pipelined_request_waits_until_the_answer_before_it_has_left(h: Harness) -> None:
    assert h.send(b"GET /a HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
    h.loop.handover(h.conn)
    h.conn.inbuf = bytearray(h.conn.parser.unreader.take_buffered())
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    h.loop.send(h.conn, answer, keep=True)
    assert h.conn.phase == "send" and h.loop.budget.total == len(answer) + len(h.conn.inbuf)
    h.loop.write(h.conn)
    assert h.client.recv(100) == answer
    assert h.conn.phase == "ready" and h.conn.req.path == "/next"


def test_an_answer_nobody_reads_is_dropped_at_the_send_timeout(h: Harness) -> None:
    h.loop.send(h.conn, b"x" * 100, keep=True)
    h.loop.sweep(h.conn.deadline + 0.01, stopping=False)
    assert h.closed == [h.conn]
    assert h.loop.budget.total == 0


# -- what clients may hold ---------------------------------------------------------------


def test_an_address_holds_at_most_its_connections() -> None:
    limits = dataclasses.replace(LIMITS, max_connections_per_address=2)
    h = Harness(limits)
    try:
        h.connect()
        server, client = socket.socketpair()
        h.clients += [server, client]
        third = EdgeConn(GunicornConfig(), server, ("127.0.0.1", 1), ("", 0), limits)
        assert not h.loop.admit(third)
        assert h.answer(client)[0] == 429
        h.connect("127.0.0.2")  # another address has its own
    finally:
        h.close()


def test_an_address_holds_at_most_its_bytes() -> None:
    limits = dataclasses.replace(LIMITS, max_buffered_per_address=6000)
    h = Harness(limits)
    try:
        other, other_client = h.connect()
        opening = POST + b"Content-Length: 4000\r\n\r\n" + b"a" * 3500
        h.send(opening)
        h.send(opening, other, other_client)
        assert h.conn.phase == "body"
        status, problem = h.answer(other_client)  # the one that went past its address's bytes
        assert status == 429 and "this client address" in str(problem["detail"])
        assert h.loop.budget.total == h.conn.held
    finally:
        h.close()


def test_past_the_loops_bytes_the_largest_holder_is_shed_not_the_newcomer() -> None:
    limits = dataclasses.replace(LIMITS, max_buffered_bytes=8000)
    h = Harness(limits)
    try:
        big, big_client = h.connect("10.0.0.2")
        h.send(POST + b"Content-Length: 4000\r\n\r\n" + b"a" * 3900, big, big_client)
        h.send(POST + b"Content-Length: 4000\r\n\r\n" + b"a" * 3000)
        newcomer, new_client = h.connect("10.0.0.3")
        assert not h.send(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 1500, newcomer, new_client
        )
        assert h.answer(big_client)[0] == 503  # the largest holder gave way
        assert h.conn.phase == "body" and newcomer.phase == "head"
        assert h.loop.budget.total == h.conn.held + newcomer.held <= 8000
    finally:
        h.close()


def test_queued_requests_keep_their_bytes_counted_and_wait_a_bounded_time(h: Harness) -> None:
    started: list[EdgeConn] = []
    lanes = Lanes(
        {edge.REQUEST: 1, edge.UPLOAD: 1, edge.DOWNLOAD: 1}, 0, started.append, h.loop.queued
    )
    h.loop.lanes = lanes
    assert h.send(POST + b"Content-Length: 4\r\n\r\nabcd")
    assert started == [h.conn]  # the lane's one thread
    h.loop.handover(h.conn)
    waiting, client = h.connect("10.0.0.9")
    assert h.send(POST + b"Content-Length: 4\r\n\r\nwxyz", waiting, client)
    assert waiting.phase == "queued" and h.loop.budget.total == waiting.held > 0
    h.loop.sweep(waiting.deadline + 0.01, stopping=False)
    status, problem = h.answer(client)
    assert status == 503 and "no thread was free" in str(problem["detail"])
    assert not lanes.queues[edge.REQUEST] and h.loop.budget.total == 0


def test_a_transfer_past_its_clients_share_that_waits_too_long_is_told_so(h: Harness) -> None:
    started: list[EdgeConn] = []
    lanes = Lanes(
        {edge.REQUEST: 4, edge.UPLOAD: 4, edge.DOWNLOAD: 4}, 1, started.append, h.loop.queued
    )
    h.loop.lanes = lanes
    get = b"GET /v1/artifacts/a/content HTTP/1.1\r\nAuthorization: Bearer gw_x\r\n\r\n"
    assert h.send(get)
    second, client = h.connect()
    assert h.send(get, second, client)
    assert started == [h.conn] and second.phase == "queued"
    h.loop.sweep(second.deadline + 0.01, stopping=False)
    status, problem = h.answer(client)
    assert status == 429 and "already has 1 transfers" in str(problem["detail"])
