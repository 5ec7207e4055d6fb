"""One client connection as the event loop of :mod:`gateway.worker` holds it.

:class:`EdgeConn` is gunicorn's ``TConn`` with what the loop keeps per connection: its
phase and deadline (see :mod:`gateway.edge_loop`), the bytes it holds, the request read
so far and its lane; :class:`EdgeUnreader` is gunicorn's socket reader, reading the
socket only while a part body is being served.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from gunicorn.http.body import LengthReader
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn

from gateway import edge
from gateway.edge_chunked import ChunkedDecoder


class EdgeUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket reader, reading the socket only while a part body is being served.

    Otherwise (in the loop, or for a body the loop already holds) it only hands out
    what is buffered and then reports the end, so nothing can block on the client.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.live = False
        self.guard: edge.RateGuard | None = None

    def chunk(self, size_hint: int | None = None) -> bytes:
        if not self.live or self.guard is None:
            return b""
        try:
            data: bytes = super().chunk(size_hint)
        except TimeoutError:
            self.guard.trip("timeout", "the request body stalled")
        self.guard.check(len(data))
        return data


class EdgeConn(TConn):  # type: ignore[misc]
    """One client connection: gunicorn's ``TConn`` plus the loop's state."""

    def __init__(
        self, cfg: Any, sock: socket.socket, client: Any, server: Any, limits: edge.EdgeLimits
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.initialized = True  # plain HTTP/1.1: TConn.init (TLS, HTTP/2) never runs
        self.parser = RequestParser(cfg, sock, client)
        self.parser.unreader = EdgeUnreader(sock)
        self.limits = limits
        self.address = str(client[0]) if isinstance(client, tuple) and client else "-"
        self.inbuf = bytearray()
        self.out = memoryview(b"")
        self.keep = False
        self.held = 0
        self.events = 0
        self.closed = False
        self.req: Any = None
        self.lane = edge.REQUEST
        self.key = ""
        now = time.monotonic()
        self.born = self.since = now
        self.phase = "head"
        self.deadline = now + limits.header_timeout
        self.scan_from = self.line_from = 0
        self.line_ok = False
        self.need = 0
        self.decoder: ChunkedDecoder | None = None
        self.decoded = 0  # a decoded chunked body, waiting for its thread
        self.guard: edge.RateGuard | None = None
        self.receive_guard = limits.guard("receive")
        self.continue_pending = False
        self.drain_left = 0

    def holding(self) -> int:
        """Bytes the loop holds for this connection."""
        decoding = self.decoder.held() if self.decoder is not None else 0
        return len(self.inbuf) + decoding + self.decoded + len(self.out)

    def idle(self) -> None:
        """Back from a response kept alive; ``inbuf`` holds what starts the next head, if any."""
        self.req, self.decoder, self.guard, self.continue_pending = None, None, None, False
        self.out, self.key, self.lane = memoryview(b""), "", edge.REQUEST
        self.scan_from = self.line_from = 0
        self.line_ok = False
        self.since = now = time.monotonic()
        if self.inbuf:
            self.phase, self.deadline = "head", now + self.limits.header_timeout
        else:
            self.phase, self.deadline = "idle", now + self.limits.idle_timeout

    def body_consumed(self) -> bool:
        """Whether the request's body was read to its end, so the next request can follow."""
        body = self.req.body
        if getattr(body, "failed", False):
            return False
        if self.lane != edge.UPLOAD:
            self.parser.finish_body()  # only from memory: the loop read the body whole
        reader = body.reader
        return isinstance(reader, LengthReader) and reader.length == 0


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """One non-blocking send: a client that does not take a short answer gets none."""
    with contextlib.suppress(OSError):
        sock.send(data)
