"""A part's request body, read from the server's socket without the WSGI layers' copies.

Under gunicorn, ``wsgi.input`` hands out a body through two buffering layers that copy
every byte several times; at hundreds of MB/s that is most of the server's CPU. When the
body is gunicorn's plain ``Content-Length`` body, :func:`part_body` takes what gunicorn
has already received and then reads the rest straight from the socket. :meth:`close`
hands any unread remainder back to gunicorn's reader, whose ``length`` then says the body
was not read to its end, so the server closes the connection rather than read the rest
as a request. Anything else (the test client, another server) gets the portable WSGI path.

Under the gateway's worker (:mod:`gateway.worker`) every read is bounded: each waits at
most the edge's body timeout, and the body must keep to the minimum rate
(``environ[gateway.edge.ENVIRON_RATE_GUARD]``). A client that stalls makes ``read``
raise :class:`gateway.edge.Stalled`; a client that closed reads as the end of the body.
Either way the store keeps nothing of the part (it sees a truncated body).
"""

from __future__ import annotations

import io
import socket
from typing import IO, Any

from gateway import metrics
from gateway.edge import ENVIRON_CONTINUE, ENVIRON_RATE_GUARD, RateGuard, Stalled

MAX_RECV = 4 << 20


class WSGIBody:
    """The portable path: ``wsgi.input``, with a client that went away read as the end."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.inner.read(n)
        except Stalled:
            raise
        except (OSError, ValueError):
            return b""
        except Exception as exc:  # noqa: BLE001 - werkzeug's ClientDisconnected and kin
            if type(exc).__name__ == "ClientDisconnected":
                return b""
            raise
        metrics.BYTES_IN.inc(len(data))
        return data

    def close(self) -> None:
        """Nothing to hand back: the server decides what to do with an unread rest."""


class SocketBody:
    """The rest of a gunicorn ``Content-Length`` body, straight from the socket.

    With a ``guard``, the socket's timeout is the guard's, and every read counts
    towards its minimum rate; a stall raises :class:`Stalled`.
    """

    def __init__(
        self, reader: Any, sock: socket.socket, head: bytes, left: int, guard: RateGuard | None
    ) -> None:
        self._reader, self._sock, self._head, self._left = reader, sock, head, left
        self._guard = guard
        if guard is not None and sock.gettimeout() != guard.timeout:
            sock.settimeout(guard.timeout)

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data = self._head if n is None or n < 0 else self._head[:n]
            self._head = self._head[len(data) :]
        elif self._left <= 0:
            return b""
        else:
            want = self._left if n is None or n < 0 else min(n, self._left)
            data = self._recv(min(want, MAX_RECV))
            self._left -= len(data)
        metrics.BYTES_IN.inc(len(data))
        return data

    def _recv(self, size: int) -> bytes:
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            if self._guard is None:
                return b""
            self._guard.trip("timeout", "the part body stalled")
        except OSError:
            return b""  # the client went away: the body ends short
        if self._guard is not None:
            self._guard.check(len(data))
        return data

    def close(self) -> None:
        """Give back to gunicorn what was not read, buffered head included."""
        rest = self._head
        self._head = b""
        if rest:
            self._reader.unreader.unread(rest)
        self._reader.length = self._left + len(rest)
        self._left = 0


def part_body(environ: dict[str, Any], length: int) -> WSGIBody | SocketBody:
    """The fastest safe reader of this request's ``length``-byte body.

    Call it once the request is known to be accepted: a client that sent ``Expect:
    100-continue`` is told to send its body only now
    (``environ[gateway.edge.ENVIRON_CONTINUE]``), so a refused one never sends it.
    """
    body = _reader(environ, length)
    send_continue = environ.get(ENVIRON_CONTINUE)
    if callable(send_continue):
        send_continue()
    return body


def _reader(environ: dict[str, Any], length: int) -> WSGIBody | SocketBody:
    wsgi_input = environ["wsgi.input"]
    reader: Any = getattr(wsgi_input, "reader", None)
    unreader: Any = getattr(reader, "unreader", None)
    sock = getattr(unreader, "sock", None)
    buffered_io = getattr(unreader, "buf", None)
    body_buf = getattr(wsgi_input, "buf", None)
    if (
        type(reader).__name__ != "LengthReader"
        or not isinstance(sock, socket.socket)
        or not isinstance(buffered_io, io.BytesIO)
        or not isinstance(body_buf, io.BytesIO)
        or body_buf.tell() != 0  # the application already read some of the body
        or getattr(reader, "length", None) != length
    ):
        return WSGIBody(wsgi_input)
    buffered = buffered_io.getvalue()
    head, beyond = buffered[:length], buffered[length:]
    unreader.buf = io.BytesIO()
    unreader.buf.write(beyond)  # bytes of a pipelined next request stay with gunicorn
    reader.length = 0
    guard = environ.get(ENVIRON_RATE_GUARD)
    return SocketBody(
        reader, sock, head, length - len(head), guard if isinstance(guard, RateGuard) else None
    )
