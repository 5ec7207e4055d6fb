"""Part bodies read from gunicorn's socket: exact bytes, any unread rest handed back, stalls kept apart."""

from __future__ import annotations

import io
import socket
import threading

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from gateway.api.body import SocketBody, WSGIBody, part_body
from gateway.edge import ENVIRON_CONTINUE, ENVIRON_RATE_GUARD, RateGuard, Stalled
from gateway.errors import BadRequest
from gateway.services.objects import RequestTimeout, store_errors
from gateway.storage.base import HashingReader, StalledBody

BODY = bytes(range(256)) * 4096  # 1 MiB
NEXT = b"GET /next HTTP/1.1\r\n\r\n"


@pytest.fixture
def conn():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _send(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send from another thread: the body is larger than the socket's buffer."""
    thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


def _gunicorn_body(sock: socket.socket, already: bytes) -> tuple[Body, SocketUnreader]:
    unreader = SocketUnreader(sock)
    unreader.buf.write(already)  # what the header parse received beyond the headers
    return Body(LengthReader(unreader, len(BODY))), unreader


def test_reads_exactly_the_body_and_leaves_the_next_request(conn) -> None:
    server, client = conn
    sender = _send(client, BODY[4096:] + NEXT)
    body, unreader = _gunicorn_body(server, BODY[:4096])
    reader = part_body({"wsgi.input": body}, len(BODY))
    assert isinstance(reader, SocketBody)
    got = b""
    while len(got) < len(BODY):
        got += reader.read(65536)
    reader.close()
    assert got == BODY
    assert body.read() == b""
    assert unreader.read(len(NEXT)) == NEXT
    sender.join(5)


def test_a_pipelined_request_in_the_buffered_head_stays_with_the_server(conn) -> None:
    server, _client = conn
    body, unreader = _gunicorn_body(server, BODY + NEXT)
    reader = part_body({"wsgi.input": body}, len(BODY))
    got = b"".join(iter(lambda: reader.read(300_000), b""))
    reader.close()
    assert got == BODY
    assert unreader.read(len(NEXT)) == NEXT


def test_a_body_abandoned_half_way_is_handed_back_to_be_drained(conn) -> None:
    server, client = conn
    sender = _send(client, BODY[100:] + NEXT)
    body, unreader = _gunicorn_body(server, BODY[:100])
    reader = part_body({"wsgi.input": body}, len(BODY))
    first = reader.read(50) + reader.read(200_000)
    reader.close()  # the store gave up: the rest must not be parsed as a request
    rest = b"".join(iter(lambda: body.read(65536), b""))
    assert first + rest == BODY
    assert unreader.read(len(NEXT)) == NEXT
    sender.join(5)


def test_anything_else_takes_the_portable_path() -> None:
    assert isinstance(part_body({"wsgi.input": io.BytesIO(b"abc")}, 3), WSGIBody)


def _guarded(server: socket.socket, already: bytes, guard: RateGuard) -> SocketBody:
    body, _unreader = _gunicorn_body(server, already)
    reader = part_body({"wsgi.input": body, ENVIRON_RATE_GUARD: guard}, len(BODY))
    assert isinstance(reader, SocketBody)
    return reader


def test_a_stalled_body_raises_stalled_after_the_timeout(conn) -> None:
    server, client = conn
    client.sendall(BODY[:1000])  # then nothing more, the connection open
    reader = _guarded(server, b"", RateGuard(0, 10, "receive", timeout=0.2))
    assert reader.read(1000) == BODY[:1000]
    with pytest.raises(Stalled) as info:
        reader.read(1000)
    assert info.value.reason == "timeout"


def test_a_client_that_closed_reads_as_the_end_not_a_stall(conn) -> None:
    server, client = conn
    client.sendall(BODY[:1000])
    client.close()
    reader = _guarded(server, b"", RateGuard(0, 10, "receive", timeout=5))
    assert reader.read(1000) == BODY[:1000]
    assert reader.read(1000) == b""


def test_a_trickled_body_falls_below_the_minimum_rate(conn) -> None:
    server, client = conn
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.02):
            client.send(b"x")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    reader = _guarded(server, b"", RateGuard(1 << 20, 0.3, "receive", timeout=5))
    try:
        with pytest.raises(Stalled) as info:
            for _ in range(1000):
                reader.read(65536)
        assert info.value.reason == "min_rate"
    finally:
        stop.set()
        thread.join(5)


def test_the_portable_path_passes_a_stall_on() -> None:
    class Stalling(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            raise Stalled("timeout", "receive", "stalled")

    with pytest.raises(Stalled):
        WSGIBody(Stalling()).read(10)  # type: ignore[arg-type]


def test_a_client_waiting_for_100_continue_is_told_once_the_body_is_wanted(conn) -> None:
    server, _client = conn
    body, _unreader = _gunicorn_body(server, b"")
    told: list[str] = []
    environ = {"wsgi.input": body, ENVIRON_CONTINUE: lambda: told.append("100")}
    reader = part_body(environ, len(BODY))
    assert isinstance(reader, SocketBody) and told == ["100"]


def test_a_stalled_part_is_answered_408_not_as_a_short_body(conn) -> None:
    """Through the store's reader a stall stays a stall: 408 (retry), never 400 (short body)."""
    server, client = conn
    client.sendall(BODY[:1000])  # then nothing more, the connection open
    reader = _guarded(server, b"", RateGuard(0, 10, "receive", timeout=0.2))
    hashing = HashingReader(reader, 3, len(BODY), "0" * 64)  # type: ignore[arg-type]
    with pytest.raises(RequestTimeout) as info, store_errors("up_1"):
        while hashing.read(65536):
            pass
    assert info.value.status == 408 and "part 3" in info.value.detail
    assert isinstance(hashing.failure, StalledBody)  # what a wrapping transport re-raises


def test_a_part_that_ends_early_is_still_a_bad_request(conn) -> None:
    server, client = conn
    client.sendall(BODY[:1000])
    client.close()
    reader = _guarded(server, b"", RateGuard(0, 10, "receive", timeout=5))
    hashing = HashingReader(reader, 3, len(BODY), "0" * 64)  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as info, store_errors("up_1"):
        while hashing.read(65536):
            pass
    assert info.value.status == 400
