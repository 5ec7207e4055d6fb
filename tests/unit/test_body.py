"""Part bodies read from gunicorn's socket: exact bytes, and any unread rest handed back."""

from __future__ import annotations

import io
import socket
import threading

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from gateway.api.body import SocketBody, WSGIBody, part_body

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
