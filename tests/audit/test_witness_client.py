"""The tlog-witness client against witnesses that misbehave on the wire.

Each "witness" is a socket on 127.0.0.1 served by a thread that answers as a hostile
witness would: it trickles its answer one byte at a time, each byte well inside the
client's per-read timeout, or it redirects elsewhere. The client must give up at its
deadline, and must never follow a redirect.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gateway.audit import merkle, note
from gateway.audit import witness as wp
from gateway.audit.cosignature import Ed25519Cosigner

LOG = note.Signer("example.com/log", bytes(32))
SIGNED = note.sign_checkpoint(note.Checkpoint("example.com/log", 7, merkle.leaf_hash(b"r")), LOG)
KEYS = [Ed25519Cosigner("witness.test/w1", bytes([7]) * 32).verifier]
CONFLICT = (
    b"HTTP/1.1 409 Conflict\r\nContent-Type: text/x.tlog.size\r\nContent-Length: 2\r\n\r\n5\n"
)

Answer = Callable[[socket.socket, threading.Event], None]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


@contextmanager
def hostile_witness(answer: Answer) -> Iterator[str]:
    """A URL whose every connection is answered by ``answer`` in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the thread sees the stop
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with conn:
                try:
                    _read_request(conn)
                    answer(conn, stop)
                except OSError:
                    pass  # the client gave up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(10)


def trickle(data: bytes, every: float = 0.2) -> Answer:
    """Send ``data`` a byte at a time; the whole of it takes far longer than the test's deadline."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        for i in range(len(data)):
            if stop.wait(every):
                return
            conn.sendall(data[i : i + 1])

    return answer


SLOW_HEAD = CONFLICT[:20] + b"X-Padding: " + b"a" * 100 + b"\r\n" + CONFLICT[20:]
SLOW_BODY = (
    b"HTTP/1.1 409 Conflict\r\nContent-Type: text/x.tlog.size\r\nContent-Length: 122\r\n\r\n"
    + b"5" * 120
    + b"\n"
)


@pytest.mark.parametrize("answer", [SLOW_HEAD, SLOW_BODY], ids=["head", "body"])
def test_a_witness_that_trickles_its_answer_is_given_up_at_the_deadline(answer: bytes) -> None:
    with hostile_witness(trickle(answer)) as url:
        client = wp.WitnessClient(url, KEYS, timeout=1.0, deadline=2.0)
        started = time.monotonic()
        with pytest.raises(wp.WitnessUnreachable, match="did not answer within 2 s"):
            wp.cosign(client, 0, lambda old: [], SIGNED)
        # The whole answer would take 0.2 s a byte: far past the deadline, had it been waited for.
        assert time.monotonic() - started < len(answer) * 0.2


def test_a_redirect_is_a_refusal_and_is_not_followed() -> None:
    followed = threading.Event()

    def elsewhere(conn: socket.socket, stop: threading.Event) -> None:
        followed.set()
        conn.sendall(CONFLICT)

    with hostile_witness(elsewhere) as target:

        def redirect(conn: socket.socket, stop: threading.Event) -> None:
            conn.sendall(
                f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}/add-checkpoint\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )

        with hostile_witness(redirect) as url:
            client = wp.WitnessClient(url, KEYS)
            with pytest.raises(wp.WitnessRefused, match="witness answered 307"):
                client.add_checkpoint(0, [], SIGNED)
            with pytest.raises(wp.WitnessRefused, match="witness answered 307"):
                client.checkpoint("example.com/log")
    assert not followed.is_set()


def test_an_answer_over_the_size_limit_or_with_a_bad_length_is_refused() -> None:
    for head in (f"Content-Length: {wp.MAX_RESPONSE_BYTES + 1}", "Content-Length: " + "9" * 5000):

        def answer(conn: socket.socket, stop: threading.Event, head: str = head) -> None:
            conn.sendall(f"HTTP/1.1 200 OK\r\n{head}\r\n\r\n".encode())

        with hostile_witness(answer) as url, pytest.raises(wp.WitnessError):
            wp.WitnessClient(url, KEYS).add_checkpoint(0, [], SIGNED)


def test_an_unreachable_witness_is_a_witness_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it once closed
    client = wp.WitnessClient(f"http://127.0.0.1:{port}", KEYS, timeout=2.0)
    with pytest.raises(wp.WitnessUnreachable, match="cannot reach witness"):
        client.add_checkpoint(0, [], SIGNED)
    with pytest.raises(ValueError, match="http:// or https://"):
        wp.WitnessClient("ftp://witness.example", KEYS)
