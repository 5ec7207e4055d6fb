"""The event loop's side of :mod:`gateway.worker`: each connection's phase, bytes and deadline.

A connection is in exactly one phase while the loop holds it:

``idle``    kept alive between requests, closed after ``idle_timeout``;
``head``    reading a request head, until ``header_timeout`` after it began;
``body``    reading a small body whole, until ``body_timeout`` after the head;
``part``    reading the first bytes of a part body, each wait at most ``body_timeout``
            and no slower than the minimum rate;
``linger``  answered and half-closed: what the client still sends is discarded for a
            moment, so that it reads the answer rather than a reset.

Nothing here blocks: sockets are non-blocking, and a connection leaves the loop (to a
pool thread) only with its head parsed and its small body, or the start of its part,
in memory. All bytes held across connections are bounded by ``max_buffered_bytes``.
"""

from __future__ import annotations

import contextlib
import io
import socket
import time
from collections.abc import Callable
from typing import Any

from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.errors import LimitRequestLine
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import IterUnreader, SocketUnreader
from gunicorn.workers.gthread import TConn

from gateway import edge, metrics

#: A part upload goes to an upload thread once this much of its body has arrived, so a
#: client trickling its first bytes never holds one; a part no larger than this is read
#: whole in the loop and served by an ordinary request thread.
PART_START_BYTES = 64 << 10
#: Longest a refused connection is kept half-open for its client to read the answer.
LINGER_SECONDS = 2.0
_RECV = 256 << 10
_100_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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
        self.inbuf = bytearray()
        self.held = 0
        self.req: Any = None
        self.lane = edge.REQUEST
        self.phase = "head"
        self.deadline = time.monotonic() + limits.header_timeout
        self.scan_from = 0
        self.line_ok = False
        self.need = 0
        self.scanner: edge.ChunkedScanner | None = None
        self.guard: edge.RateGuard | None = None
        self.receive_guard = limits.guard("receive")
        self.drain_left = 0

    def idle(self, pipelined: bytes) -> None:
        """Back from a thread after a kept-alive response; ``pipelined`` starts the next head."""
        self.req, self.scanner, self.guard = None, None, None
        self.inbuf = bytearray(pipelined)
        self.scan_from, self.line_ok = 0, False
        now = time.monotonic()
        if pipelined:
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


class Loop:
    """The connections the event loop holds, and what it does with their bytes."""

    def __init__(self, limits: edge.EdgeLimits, on_close: Callable[[EdgeConn], None]) -> None:
        self.limits, self.on_close = limits, on_close
        self.conns: set[EdgeConn] = set()
        self.buffered = 0
        self._scratch = bytearray(_RECV)

    def add(self, conn: EdgeConn) -> None:
        self.conns.add(conn)

    def remove(self, conn: EdgeConn) -> None:
        self.conns.discard(conn)

    def _held(self, conn: EdgeConn) -> None:
        self.buffered += len(conn.inbuf) - conn.held
        conn.held = len(conn.inbuf)

    def advance(self, conn: EdgeConn, data: bytes | None) -> bool:
        """Take new bytes (``None``: read them from the socket); True when ready for a thread."""
        if data is None:
            if conn.phase == "linger":
                self._drain(conn)
                return False
            try:
                data = conn.sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                data = b""
            if not data:
                self.close(conn)
                return False
            conn.inbuf += data
            self._held(conn)
            if self.buffered > self.limits.max_buffered_bytes:
                self.refuse(conn, edge.busy())
                return False
        if conn.phase == "idle":
            conn.phase, conn.deadline = "head", time.monotonic() + self.limits.header_timeout
        try:
            if conn.phase == "head":
                return self._head(conn)
            if conn.phase == "body":
                return self._body(conn, data)
            if conn.phase == "part":
                assert conn.guard is not None
                conn.guard.check(len(data))
                conn.deadline = time.monotonic() + self.limits.body_timeout
                return len(conn.inbuf) >= conn.need and self._ready(conn)
        except edge.Stalled as exc:
            metrics.edge_closed(exc)
            self.refuse(conn, edge.too_slow(self.limits.min_rate))
        return False

    def _head(self, conn: EdgeConn) -> bool:
        buf, limits = conn.inbuf, self.limits
        start = 2 if buf[:2] == b"\r\n" else 0
        end = buf.find(b"\r\n\r\n", max(start, conn.scan_from))
        line_limit = conn.cfg.limit_request_line or 8190
        if not conn.line_ok:
            conn.line_ok = buf.find(b"\r\n", start, start + line_limit + 2) >= 0
            if not conn.line_ok and len(buf) - start > line_limit + 2:
                return self.refuse(conn, edge.protocol_problem(LimitRequestLine(len(buf))))
        if end < 0:
            conn.scan_from = max(start, len(buf) - 3)
            if len(buf) > limits.max_header_bytes:
                return self.refuse(conn, edge.head_too_large(limits.max_header_bytes))
            return False
        if end + 4 > limits.max_header_bytes:
            return self.refuse(conn, edge.head_too_large(limits.max_header_bytes))
        unreader = conn.parser.unreader
        unreader.unread(bytes(buf))
        buf.clear()
        try:
            conn.req = next(conn.parser)
        except StopIteration:
            self.close(conn)
            return False
        except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors are the client's
            return self.refuse(conn, edge.protocol_problem(exc) or edge.internal_error())
        conn.inbuf = bytearray(unreader.take_buffered())
        self._held(conn)
        return self._framing(conn)

    def _framing(self, conn: EdgeConn) -> bool:
        """After the head: how much body the loop reads before a thread takes over.

        A part larger than :data:`PART_START_BYTES` waits here for that much, then goes to
        an upload thread; a smaller part is read whole (it is bounded by its length). Any
        other body is read whole, at most ``max_json_bytes`` raw bytes.
        """
        req, limits = conn.req, self.limits
        conn.lane = edge.lane_of(req.method, req.path or "")
        reader = req.body.reader
        chunked = isinstance(reader, ChunkedReader)
        length = 0 if chunked else reader.length
        part = conn.lane == edge.UPLOAD
        if part and chunked:
            return self._ready(conn)  # refused by the application, then closed unread
        if part and length <= PART_START_BYTES:
            conn.lane = edge.REQUEST  # served like any request: its body is in memory
        if conn.lane == edge.UPLOAD:
            conn.need, conn.phase = PART_START_BYTES, "part"
            conn.guard = limits.guard("receive")
        elif chunked:
            conn.scanner, conn.phase = edge.ChunkedScanner(), "body"
        elif length > limits.max_json_bytes and not part:
            metrics.edge_too_large()
            return self.refuse(conn, edge.too_large(limits.max_json_bytes, "the request body"))
        else:
            conn.need, conn.phase = length, "body"
        if req._expected_100_continue and (chunked or length > len(conn.inbuf)):
            req._expected_100_continue = False
            _send_quietly(conn.sock, _100_CONTINUE)
        conn.deadline = time.monotonic() + limits.body_timeout
        if conn.phase == "body":
            return self._body(conn, bytes(conn.inbuf))
        return len(conn.inbuf) >= conn.need and self._ready(conn)

    def _body(self, conn: EdgeConn, data: bytes) -> bool:
        if conn.scanner is None:
            return len(conn.inbuf) >= conn.need and self._ready(conn)
        try:
            end = conn.scanner.feed(data)
        except ValueError as exc:
            return self.refuse(conn, edge.bad_framing(f"the chunked body is malformed: {exc}"))
        if end is None:
            if conn.scanner.scanned > self.limits.max_json_bytes:
                metrics.edge_too_large()
                return self.refuse(
                    conn, edge.too_large(self.limits.max_json_bytes, "the request body")
                )
            return False
        cut = len(conn.inbuf) - len(data) + end
        raw, conn.inbuf = bytes(conn.inbuf[:cut]), conn.inbuf[cut:]
        try:
            conn.req.body = _decoded(conn.req, raw)
        except Exception as exc:  # noqa: BLE001 - gunicorn's chunk errors are the client's
            return self.refuse(conn, edge.protocol_problem(exc) or edge.bad_framing(str(exc)))
        return self._ready(conn)

    def _ready(self, conn: EdgeConn) -> bool:
        """Hand what the loop holds to gunicorn's reader; the connection goes to a thread."""
        conn.parser.unreader.unread(bytes(conn.inbuf))
        conn.inbuf.clear()
        self._held(conn)
        conn.receive_guard = self.limits.guard("receive")
        conn.parser.unreader.guard = conn.receive_guard
        conn.phase = "busy"
        return True

    def refuse(self, conn: EdgeConn, problem: edge.Problem | None) -> bool:
        """Answer ``problem`` from the loop (if the socket takes it) and linger; always False."""
        problem = problem or edge.internal_error()
        metrics.edge_rejected(problem.status)
        _send_quietly(conn.sock, edge.problem_response(problem))
        self.linger(conn)
        return False

    def linger(self, conn: EdgeConn) -> None:
        """Half-close and discard a little more input, so the client reads the answer."""
        conn.inbuf = bytearray()
        self._held(conn)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        conn.phase = "linger"
        conn.deadline = time.monotonic() + min(LINGER_SECONDS, self.limits.idle_timeout)
        conn.drain_left = self.limits.max_json_bytes

    def _drain(self, conn: EdgeConn) -> None:
        try:
            got = conn.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            got = 0
        conn.drain_left -= got
        if got == 0 or conn.drain_left <= 0:
            self.close(conn)

    def sweep(self, now: float, stopping: bool) -> None:
        """Close or refuse every connection past its deadline (or below the minimum rate)."""
        for conn in list(self.conns):
            if conn.phase == "idle" and stopping:
                self.close(conn)
            elif now >= conn.deadline:
                self._expire(conn)
            elif conn.phase == "part" and conn.guard is not None:
                try:
                    conn.guard.check(0)
                except edge.Stalled as exc:
                    metrics.edge_closed(exc)
                    self.refuse(conn, edge.too_slow(self.limits.min_rate))

    def _expire(self, conn: EdgeConn) -> None:
        limits = self.limits
        if conn.phase == "idle":
            metrics.edge_closed("idle_timeout")
            self.close(conn)
        elif conn.phase == "head":
            metrics.edge_closed("header_timeout")
            if conn.inbuf:
                self.refuse(conn, edge.timed_out("the request head", limits.header_timeout))
            else:
                self.close(conn)
        elif conn.phase in ("body", "part"):
            metrics.edge_closed("body_timeout")
            self.refuse(conn, edge.timed_out("the request body", limits.body_timeout))
        else:
            self.close(conn)

    def close(self, conn: EdgeConn) -> None:
        self.conns.discard(conn)
        conn.inbuf = bytearray()
        self._held(conn)
        self.on_close(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def close_all(self) -> None:
        for conn in list(self.conns):
            self.close(conn)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """One non-blocking send: a client that does not take a short answer gets none."""
    with contextlib.suppress(OSError):
        sock.send(data)


def _decoded(req: Any, raw: bytes) -> Body:
    """A chunked body the loop read whole, decoded by gunicorn's own reader, as a plain body."""
    source = IterUnreader([raw])
    reader = ChunkedReader(req, source)
    out = io.BytesIO()
    while piece := reader.read(1 << 20):
        out.write(piece)
    if source.take_buffered():
        raise ValueError("bytes follow the end of the chunked body")
    data = out.getvalue()
    return Body(LengthReader(IterUnreader([data]), len(data)))
