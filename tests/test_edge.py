"""The edge's rules without a server: lanes, shares, the rate rule, chunked bodies, descriptors."""

from __future__ import annotations

import io
import resource
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from flask import Flask
from gunicorn.http import errors as http_errors
from gunicorn.http.body import ChunkedReader
from gunicorn.http.unreader import IterUnreader
from hypothesis import given
from hypothesis import strategies as st

from gateway import edge, metrics
from gateway import edge_problems as problems
from gateway.config import ServerConfig
from gateway.edge_chunked import BYTES_PER_CHUNK, MIN_CHUNKS, ChunkedDecoder, ChunkedError
from gateway.edge_lanes import Lanes
from gateway.edge_send import ResponseWriter

LANES = [
    ("PUT", "/v1/uploads/upl_1/parts/3", edge.UPLOAD),
    ("GET", "/v1/uploads/upl_1/parts/3", edge.REQUEST),
    ("PUT", "/v1/uploads/upl_1/parts/3/x", edge.REQUEST),
    ("GET", "/v1/artifacts/art_1/content", edge.DOWNLOAD),
    ("HEAD", "/download/art_1", edge.DOWNLOAD),
    ("POST", "/v1/artifacts/art_1/content", edge.REQUEST),
    ("GET", "/healthz", edge.REQUEST),
    # percent-encoded, as Flask decodes them before routing
    ("GET", "/v1/artifacts/art_1/%63ontent", edge.DOWNLOAD),
    ("GET", "/%64ownload/art_1", edge.DOWNLOAD),
    ("PUT", "/v1/uploads/upl_1/part%73/3", edge.UPLOAD),
    ("GET", "/v1/artifacts/art_1%2Fcontent", edge.DOWNLOAD),
]


@pytest.mark.parametrize(("method", "path", "lane"), LANES)
def test_lanes_follow_the_decoded_path(method: str, path: str, lane: str) -> None:
    assert edge.Router().lane(method, path) == lane


def test_lanes_follow_the_endpoint_the_application_routes_to(app: Flask) -> None:
    router = edge.Router(app.url_map)
    for method, path, lane in LANES:
        assert router.lane(method, path) == lane, (method, path)
    assert router.lane("PUT", "/v1/uploads/u/parts/x") == edge.REQUEST  # not a part number


def test_transfers_are_counted_against_the_token_then_the_grant_then_the_address() -> None:
    bearer = [("HOST", "x"), ("AUTHORIZATION", "Bearer gw_a")]
    assert edge.client_key(bearer, "grant=g1", "10.0.0.1") == edge.client_key(bearer, "", "::1")
    assert edge.client_key(bearer, "", "a") != edge.client_key([("AUTHORIZATION", "b")], "", "a")
    assert "gw_a" not in edge.client_key(bearer, "", "a")  # the token itself is never kept
    signed = edge.client_key([], "grant=g1&sig=s", "10.0.0.1")
    assert (
        signed
        == edge.client_key([], "sig=t&grant=g1", "10.0.0.2")
        != edge.client_key([], "grant=g2", "10.0.0.1")
    )
    assert edge.client_key([], "", "10.0.0.1") == "a:10.0.0.1"


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


def test_a_stall_is_counted_once_where_it_trips() -> None:
    counter = metrics.EDGE_CLOSED.labels("min_rate")
    before = counter._value.get()
    clock = Clock()
    guard = edge.RateGuard(1000, 1.0, "send", 5.0, clock)
    clock.now = 1.0
    for _ in range(3):
        with pytest.raises(edge.Stalled):
            guard.check(0)
    assert counter._value.get() - before == 1


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


# -- chunked bodies ---------------------------------------------------------------------


def _chunked(pieces: list[bytes], trailers: bytes = b"", ext: bytes = b"") -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


def _gunicorn_decodes(wire: bytes) -> bytes:
    """The reference: gunicorn's own chunked reader over the whole wire at once."""
    req = SimpleNamespace(parse_headers=lambda data, from_trailer: [])
    reader = ChunkedReader(req, IterUnreader([wire]))
    out = io.BytesIO()
    while piece := reader.read(1 << 20):
        out.write(piece)
    return out.getvalue()


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.integers(min_value=1, max_value=50),
    st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
    st.sampled_from([b"", b";name", b' ; a=b;c="d e"']),
)
def test_the_decoder_finds_the_end_and_decodes_as_gunicorn_does(
    pieces: list[bytes], step: int, trailers: bytes, ext: bytes
) -> None:
    wire = _chunked(pieces, trailers, ext)
    data = wire + b"GET /next HTTP/1.1\r\n\r\n"
    decoder = ChunkedDecoder()
    end = None
    for i in range(0, len(data), step):
        end = decoder.feed(data[i : i + step])
        if end is not None:
            assert i + end == len(wire)
            break
    assert end is not None
    assert bytes(decoder.body) == b"".join(pieces) == _gunicorn_decodes(wire)
    assert bytes(decoder.trailers) == trailers


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nabc\r\n",
        b"3\r\nabcdef\r\n",
        b"3\nabc\n",
        b"3\r\nabc\r\n" + b"1" * 9000,
        b" 3\r\nabc\r\n",
        b"3;=x\r\nabc\r\n",
        b"3;a\rb\r\nabc\r\n",
        b"0\r\nX: 1\n\r\n",
        b"0\r\n" + b"X-A: b\r\n" * 2000,
    ],
)
def test_the_decoder_refuses_malformed_framing(wire: bytes) -> None:
    with pytest.raises(ChunkedError):
        ChunkedDecoder().feed(wire)


def test_tiny_chunks_are_refused_once_they_pass_their_allowance() -> None:
    """1-byte chunks: each costs fixed work, so only the first few are free."""
    decoder = ChunkedDecoder()
    with pytest.raises(ChunkedError, match="average at least"):
        decoder.feed(b"1\r\nx\r\n" * 100_000 + b"0\r\n\r\n")
    assert MIN_CHUNKS <= decoder.chunks <= MIN_CHUNKS + 8


def test_chunks_of_ordinary_size_may_fill_a_whole_body() -> None:
    piece = b"a" * BYTES_PER_CHUNK
    wire = _chunked([piece] * 4000)
    decoder = ChunkedDecoder()
    assert decoder.feed(wire) == len(wire)
    assert len(decoder.body) == 4000 * BYTES_PER_CHUNK


def test_the_decoder_knows_a_chunk_past_the_limit_from_its_size() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"40000000\r\nabc") is None
    assert decoder.promised > 1 << 30


# -- the answers the edge gives itself --------------------------------------------------


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
    import json

    problem = problems.protocol_problem(exc)
    assert problem is not None and problem.status == status
    head, body = problems.problem_response(problem).split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body)["status"] == status


def test_other_errors_are_not_protocol_problems() -> None:
    assert problems.protocol_problem(RuntimeError("x")) is None


def test_refusals_for_busy_or_greedy_clients_say_when_to_retry() -> None:
    for problem in (problems.busy(), problems.over_share(2), problems.queue_timeout(10)):
        assert b"\r\nRetry-After: 1\r\n" in problems.problem_response(problem)


# -- the lanes' threads and each client's share ------------------------------------------


def _lanes(share: int = 2, threads: int = 3) -> tuple[Lanes[SimpleNamespace], list[str]]:
    started: list[str] = []
    counts = {edge.REQUEST: threads, edge.UPLOAD: threads, edge.DOWNLOAD: threads}
    lanes: Lanes[SimpleNamespace] = Lanes(counts, share, lambda c: started.append(c.name))
    return lanes, started


def _conn(name: str, key: str, lane: str = edge.UPLOAD) -> SimpleNamespace:
    return SimpleNamespace(name=name, key=key, lane=lane)


def test_a_client_holds_at_most_its_share_of_a_transfer_lane() -> None:
    lanes, started = _lanes()
    a = [_conn(f"a{i}", "lab-a") for i in range(4)]
    for c in a:
        lanes.offer(c)
    assert started == ["a0", "a1"]  # the third thread stays free for someone else
    lanes.offer(_conn("b0", "lab-b"))
    assert started == ["a0", "a1", "b0"]
    lanes.done(a[0])
    assert started[-1] == "a2"  # lab-a's turn again, within its share
    assert lanes.at_share(a[3])


def test_a_waiting_request_goes_first_come_first_served_and_can_leave() -> None:
    lanes, started = _lanes(share=0, threads=1)
    first, second, third = (_conn(n, n, edge.REQUEST) for n in ("x", "y", "z"))
    for c in (first, second, third):
        lanes.offer(c)
    lanes.drop(second)
    lanes.done(first)
    assert started == ["x", "z"]


# -- the send side -----------------------------------------------------------------------


def _pair() -> tuple[socket.socket, socket.socket]:
    server, client = socket.socketpair()
    for s in (server, client):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return server, client


def test_a_small_answer_nobody_reads_is_left_to_the_loop_without_waiting() -> None:
    server, client = _pair()
    with server, client:
        writer = ResponseWriter(server, edge.RateGuard(0, 10.0, "send", 30.0), hold=1 << 20)
        answer = b"x" * (512 << 10)
        start = time.monotonic()
        writer.sendall(answer)
        rest = writer.finish()
        assert time.monotonic() - start < 5  # no 30 s send timeout waited out
        assert 0 < len(rest) < len(answer) and answer.endswith(rest)


def test_a_response_nobody_reads_is_cut_after_the_send_timeout() -> None:
    server, client = _pair()
    with server, client:
        writer = ResponseWriter(server, edge.RateGuard(0, 10.0, "send", 0.3), hold=0)
        start = time.monotonic()
        with pytest.raises(edge.Stalled) as info:
            writer.sendall(b"x" * (4 << 20))
        assert info.value.reason == "timeout" and info.value.direction == "send"
        assert time.monotonic() - start < 5


def _reader(client: socket.socket, stop: threading.Event, per_read: int) -> threading.Thread:
    def run() -> None:  # for 3 s at most: a guard without the rate rule then times out
        end = time.monotonic() + 3
        while not stop.wait(0.02) and time.monotonic() < end:
            try:
                client.recv(per_read)
            except OSError:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_response_read_too_slowly_is_cut_by_the_minimum_rate() -> None:
    server, client = _pair()
    stop = threading.Event()
    reader = _reader(client, stop, 512)
    with server, client:
        writer = ResponseWriter(server, edge.RateGuard(1 << 20, 0.3, "send", 5.0), hold=0)
        try:
            with pytest.raises(edge.Stalled) as info:
                writer.sendall(b"x" * (64 << 20))
            assert info.value.reason == "min_rate"
        finally:
            stop.set()
            reader.join(5)


def test_the_send_rate_counts_from_the_first_write_not_from_the_request() -> None:
    """A request that took longer than the grace period to arrive is not a slow reader."""
    server, client = socket.socketpair()
    clock = Clock()
    guard = edge.RateGuard(1000, 2.0, "send", 5.0, clock)
    clock.now = 60.0  # the application ran (an upload arrived) for a minute
    with server, client:
        writer = ResponseWriter(server, guard, hold=0)
        writer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        assert client.recv(100).endswith(b"{}")


# -- file descriptors ---------------------------------------------------------------------


def _claim_under(soft: int, hard: int, max_connections: int) -> subprocess.CompletedProcess[str]:
    code = (
        "import resource, sys\n"
        "from gateway import edge\n"
        "from gateway.config import ServerConfig\n"
        f"try: print(edge.claim_descriptors(ServerConfig(max_connections={max_connections})))\n"
        "except edge.DescriptorLimit as e: print('refused', e); sys.exit(3)\n"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return subprocess.run(
        [sys.executable, "-c", code], preexec_fn=limit, capture_output=True, text=True, timeout=60
    )


def test_the_open_file_limit_is_raised_to_what_the_connections_need() -> None:
    done = _claim_under(256, 4096, max_connections=1000)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 4096


def test_a_server_that_could_not_hold_its_connections_refuses_to_start() -> None:
    done = _claim_under(512, 512, max_connections=1000)
    assert done.returncode == 3, done.stderr
    need = edge.descriptors_needed(ServerConfig(max_connections=1000))
    assert f"need about {need} open files" in done.stdout and "only 512" in done.stdout
