"""The event loop of :mod:`gateway.worker`: each connection's phase, bytes and deadline.

A connection is in exactly one phase:

``idle``    kept alive between requests, closed after ``idle_timeout`` (or at once, the
            longest idle first, to make room when the worker holds all it may);
``head``    reading a request head, until ``header_timeout`` after it began;
``body``    reading a small body whole, within ``body_timeout`` of the head, no slower
            than the minimum rate;
``part``    reading the first bytes of a part body, each wait at most ``body_timeout``
            and no slower than the minimum rate;
``ready``   read; ``queued`` waiting for a thread of its lane (:mod:`gateway.edge_lanes`),
            at most ``queue_timeout``; nothing more is read from it meanwhile;
``busy``    served by a pool thread: the loop does not touch it;
``send``    answered, the loop writing what the client has not taken yet, each wait at
            most ``send_timeout``, no slower than the minimum rate; the next request on
            the connection is not read before that is done;
``linger``  answered and half-closed: what the client still sends is discarded for a
            moment, so that it reads the answer rather than a reset.

Nothing here blocks: sockets are non-blocking, and a connection goes to a pool thread
only with its head parsed and its small body, or the start of its part, in memory.
Every byte the loop holds for a connection (head, body, the start of a part, an answer
not sent yet) counts twice: against its client address, which may hold at most
``max_buffered_per_address`` (past it, that connection is refused), and against the
whole loop, ``max_buffered_bytes`` (past it, the connection holding the most is shed,
so a newcomer's head is not what gets refused). An address may hold at most
``max_connections_per_address`` connections.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Callable

from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.errors import LimitRequestLine
from gunicorn.http.unreader import IterUnreader

from gateway import edge, metrics
from gateway import edge_problems as problems
from gateway.edge_budget import Budget
from gateway.edge_chunked import ChunkedDecoder, ChunkedError
from gateway.edge_conn import EdgeConn, send_quietly
from gateway.edge_lanes import Lanes

#: A part upload goes to an upload thread once this much of its body has arrived, so a
#: client trickling its first bytes never holds one; a part no larger than this is read
#: whole in the loop and served by an ordinary request thread.
PART_START_BYTES = 64 << 10
#: Longest a refused connection is kept half-open for its client to read the answer.
LINGER_SECONDS = 2.0
_RECV = 256 << 10
_SEND = 256 << 10
_100_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TRANSFERS = (edge.UPLOAD, edge.DOWNLOAD)


class Loop:
    """The connections the event loop holds, and what it does with their bytes.

    ``watch(conn, events)`` (re)registers a socket with the worker's selector (0: none);
    :attr:`lanes`, when set, takes each connection whose request is ready for a thread.
    """

    def __init__(
        self,
        limits: edge.EdgeLimits,
        on_close: Callable[[EdgeConn], None],
        watch: Callable[[EdgeConn, int], None] | None = None,
        router: edge.Router | None = None,
    ) -> None:
        self.limits, self.on_close = limits, on_close
        self.watch = watch or (lambda conn, events: None)
        self.router = router or edge.Router()
        self.lanes: Lanes[EdgeConn] | None = None
        self.conns: set[EdgeConn] = set()
        self.budget = Budget(limits)
        self._scratch = bytearray(_RECV)

    # -- connections and their bytes ---------------------------------------------------

    def admit(self, conn: EdgeConn) -> bool:
        """Take a new connection, unless its address already holds as many as it may."""
        if not self.budget.admit(conn):
            metrics.edge_closed("address_limit")
            metrics.edge_rejected(429)
            cap = self.limits.max_connections_per_address
            send_quietly(
                conn.sock, problems.problem_response(problems.address_over_connections(cap))
            )
            with contextlib.suppress(OSError):
                conn.sock.close()
            return False
        self.conns.add(conn)
        self.watch(conn, selectors.EVENT_READ)
        return True

    def _over_budget(self, conn: EdgeConn) -> bool:
        """Refuse or shed what passes an address's or the loop's budget; True if ``conn`` was."""
        budget = self.budget
        if budget.address_over(conn):
            metrics.edge_closed("address_limit")
            self._shed(conn, problems.address_over_budget(self.limits.max_buffered_per_address))
            return True
        shed_self = False
        while budget.over():
            victim = budget.largest(self.conns)
            if victim is None:
                break
            metrics.edge_closed("shed")
            self._shed(victim, problems.busy())
            shed_self = shed_self or victim is conn
        return shed_self

    def _shed(self, conn: EdgeConn, problem: problems.Problem) -> None:
        if conn.phase == "send":
            self.close(conn)  # halfway through an answer: there is no other to give
        else:
            self.refuse(conn, problem)

    def evict_idle(self) -> bool:
        """Close the connection idle the longest, to make room for a new one; False if none is."""
        idle = (c for c in self.conns if c.phase == "idle")
        victim = min(idle, key=lambda c: c.since, default=None)
        if victim is None:
            return False
        metrics.edge_closed("evicted")
        self.close(victim)
        return True

    def has_idle(self) -> bool:
        return any(c.phase == "idle" for c in self.conns)

    # -- reading -----------------------------------------------------------------------

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
            if conn.phase == "body" and conn.decoder is not None:
                return self._chunks(conn, data)
            conn.inbuf += data
            self.budget.count(conn)
            if self._over_budget(conn):
                return False
        if conn.phase == "idle":
            conn.phase, conn.deadline = "head", time.monotonic() + self.limits.header_timeout
        try:
            if conn.phase == "head":
                return self._head(conn)
            if conn.phase in ("body", "part"):
                assert conn.guard is not None
                conn.guard.check(len(data))
                if conn.phase == "part":
                    conn.deadline = time.monotonic() + self.limits.body_timeout
                return len(conn.inbuf) >= conn.need and self._ready(conn)
        except edge.Stalled:
            self.refuse(conn, problems.too_slow(self.limits.min_rate))
        return False

    def _head(self, conn: EdgeConn) -> bool:
        buf, limits = conn.inbuf, self.limits
        start = 2 if buf[:2] == b"\r\n" else 0
        end = buf.find(b"\r\n\r\n", max(start, conn.scan_from))
        line_limit = conn.cfg.limit_request_line or 8190
        if not conn.line_ok:
            conn.line_ok = (
                buf.find(b"\r\n", max(start, conn.line_from), start + line_limit + 2) >= 0
            )
            conn.line_from = max(start, len(buf) - 1)
            if not conn.line_ok and len(buf) - start > line_limit + 2:
                return self.refuse(conn, problems.protocol_problem(LimitRequestLine(len(buf))))
        if end < 0:
            conn.scan_from = max(start, len(buf) - 3)
            if len(buf) > limits.max_header_bytes:
                return self.refuse(conn, problems.head_too_large(limits.max_header_bytes))
            return False
        if end + 4 > limits.max_header_bytes:
            return self.refuse(conn, problems.head_too_large(limits.max_header_bytes))
        unreader = conn.parser.unreader
        unreader.unread(bytes(buf))
        buf.clear()
        try:
            conn.req = next(conn.parser)
        except StopIteration:
            self.close(conn)
            return False
        except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors are the client's
            return self.refuse(conn, problems.protocol_problem(exc) or problems.internal_error())
        conn.inbuf = bytearray(unreader.take_buffered())
        self.budget.count(conn)
        return self._framing(conn)

    def _framing(self, conn: EdgeConn) -> bool:
        """After the head: how much body the loop reads before a thread takes over.

        A part larger than :data:`PART_START_BYTES` waits here for that much, then goes to
        an upload thread; a smaller part is read whole (it is bounded by its length). A
        part whose client waits for ``100 Continue`` goes to its thread at once: the
        application sends it after its checks (:data:`gateway.edge.ENVIRON_CONTINUE`).
        Any other body is read whole, at most ``max_json_bytes`` raw bytes; a GET or HEAD
        has none.
        """
        req, limits = conn.req, self.limits
        conn.lane = self.router.lane(req.method, req.path or "")
        if conn.lane in _TRANSFERS:
            conn.key = edge.client_key(req.headers, req.query or "", conn.address)
        reader = req.body.reader
        chunked = isinstance(reader, ChunkedReader)
        length = 0 if chunked else reader.length
        expects, req._expected_100_continue = req._expected_100_continue, False
        if req.method in ("GET", "HEAD") and (chunked or length):
            return self.refuse(conn, problems.body_not_allowed(req.method))
        part = conn.lane == edge.UPLOAD
        if part and (chunked or expects):
            conn.continue_pending = expects
            return self._ready(conn)  # chunked: refused by the application, closed unread
        if part and length <= PART_START_BYTES:
            conn.lane = edge.REQUEST  # served like any request: its body is in memory
        conn.guard = limits.guard("receive")
        conn.deadline = time.monotonic() + limits.body_timeout
        if conn.lane == edge.UPLOAD:
            conn.need, conn.phase = PART_START_BYTES, "part"
        elif chunked:
            conn.decoder, conn.phase = ChunkedDecoder(), "body"
        elif length > limits.max_json_bytes:
            metrics.edge_too_large()
            return self.refuse(conn, problems.too_large(limits.max_json_bytes, "the request body"))
        else:
            conn.need, conn.phase = length, "body"
        if expects and (chunked or length > len(conn.inbuf)):
            send_quietly(conn.sock, _100_CONTINUE)
        if conn.decoder is not None:
            buffered = bytes(conn.inbuf)
            conn.inbuf.clear()
            return self._chunks(conn, buffered)
        return len(conn.inbuf) >= conn.need and self._ready(conn)

    def _chunks(self, conn: EdgeConn, data: bytes) -> bool:
        """Feed a chunked body's raw bytes to its decoder; True once the body is whole."""
        decoder, limit = conn.decoder, self.limits.max_json_bytes
        assert decoder is not None and conn.guard is not None
        try:
            conn.guard.check(len(data))
            end = decoder.feed(data)
        except ChunkedError as exc:
            return self.refuse(conn, problems.bad_framing(f"the chunked body is malformed: {exc}"))
        except edge.Stalled:
            return self.refuse(conn, problems.too_slow(self.limits.min_rate))
        if decoder.promised > limit:
            metrics.edge_too_large()
            return self.refuse(conn, problems.too_large(limit, "the request body"))
        if end is not None:
            conn.inbuf = bytearray(data[end:])  # the start of a pipelined request
        self.budget.count(conn)
        if self._over_budget(conn) or end is None:
            return False
        try:
            if decoder.trailers:
                conn.req.trailers = conn.req.parse_headers(
                    bytes(decoder.trailers[:-2]), from_trailer=True
                )
        except Exception as exc:  # noqa: BLE001 - gunicorn's header errors are the client's
            return self.refuse(conn, problems.protocol_problem(exc) or problems.internal_error())
        body = bytes(decoder.body)
        conn.decoder, conn.decoded = None, len(body)
        conn.req.body = Body(LengthReader(IterUnreader([body]), len(body)))
        return self._ready(conn)

    def _ready(self, conn: EdgeConn) -> bool:
        """The request is read: nothing more is read from it until it has been served."""
        conn.phase, conn.guard = "ready", None
        self.budget.count(conn)
        self.watch(conn, 0)
        if self.lanes is not None:
            self.lanes.offer(conn)
        return True

    def queued(self, conn: EdgeConn) -> None:
        """No thread of its lane is free: wait for one, at most ``queue_timeout``."""
        conn.phase = "queued"
        conn.deadline = time.monotonic() + self.limits.queue_timeout

    def handover(self, conn: EdgeConn) -> None:
        """Hand what the loop holds to gunicorn's reader: the connection goes to a thread."""
        conn.parser.unreader.unread(bytes(conn.inbuf))
        conn.inbuf.clear()
        conn.decoded = 0
        self.budget.count(conn)
        conn.receive_guard = self.limits.guard("receive")
        conn.parser.unreader.guard = conn.receive_guard
        conn.phase = "busy"

    # -- answering -----------------------------------------------------------------------

    def send(self, conn: EdgeConn, rest: bytes, keep: bool) -> None:
        """The part of an answer its thread could not write at once: the loop writes it."""
        conn.out, conn.keep, conn.phase = memoryview(rest), keep, "send"
        conn.guard = self.limits.guard("send")
        conn.deadline = time.monotonic() + self.limits.send_timeout
        self.budget.count(conn)
        if not self._over_budget(conn):
            self.watch(conn, selectors.EVENT_WRITE)

    def write(self, conn: EdgeConn) -> None:
        """The socket of a connection in ``send`` takes more: write, and move on once done."""
        try:
            sent = conn.sock.send(conn.out[:_SEND])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        conn.out = conn.out[sent:]
        self.budget.count(conn)
        conn.deadline = time.monotonic() + self.limits.send_timeout
        assert conn.guard is not None
        try:
            conn.guard.check(sent)
        except edge.Stalled:
            self.close(conn)
            return
        if not conn.out:
            self.answered(conn, conn.keep)

    def answered(self, conn: EdgeConn, keep: bool) -> None:
        """An answer has left: read the next request (parsing any already here), or hang up."""
        if not keep:
            self.linger(conn)
            return
        conn.idle()
        self.watch(conn, selectors.EVENT_READ)
        if conn.inbuf:
            self.advance(conn, b"")

    def refuse(self, conn: EdgeConn, problem: problems.Problem | None) -> bool:
        """Answer ``problem`` from the loop (if the socket takes it) and linger; always False."""
        problem = problem or problems.internal_error()
        metrics.edge_rejected(problem.status)
        send_quietly(conn.sock, problems.problem_response(problem))
        self.linger(conn)
        return False

    def linger(self, conn: EdgeConn) -> None:
        """Half-close and discard a little more input, so the client reads the answer."""
        if conn.phase == "queued" and self.lanes is not None:
            self.lanes.drop(conn)
        conn.inbuf, conn.out, conn.decoder, conn.decoded = bytearray(), memoryview(b""), None, 0
        self.budget.count(conn)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        conn.phase, conn.guard = "linger", None
        conn.deadline = time.monotonic() + min(LINGER_SECONDS, self.limits.idle_timeout)
        conn.drain_left = self.limits.max_json_bytes
        self.watch(conn, selectors.EVENT_READ)

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

    # -- deadlines -----------------------------------------------------------------------

    def sweep(self, now: float, stopping: bool) -> None:
        """Close or refuse every connection past its deadline (or below the minimum rate)."""
        for conn in list(self.conns):
            if conn.phase in ("busy", "ready") or conn.closed:
                continue
            if conn.phase == "idle" and stopping:
                self.close(conn)
            elif now >= conn.deadline:
                self._expire(conn)
            elif conn.guard is not None:
                try:
                    conn.guard.check(0)
                except edge.Stalled:
                    if conn.phase == "send":
                        self.close(conn)
                    else:
                        self.refuse(conn, problems.too_slow(self.limits.min_rate))

    def _expire(self, conn: EdgeConn) -> None:
        limits = self.limits
        if conn.phase == "idle":
            metrics.edge_closed("idle_timeout")
            self.close(conn)
        elif conn.phase == "head":
            metrics.edge_closed("header_timeout")
            if conn.inbuf:
                self.refuse(conn, problems.timed_out("the request head", limits.header_timeout))
            else:
                self.close(conn)
        elif conn.phase in ("body", "part"):
            metrics.edge_closed("body_timeout")
            self.refuse(conn, problems.timed_out("the request body", limits.body_timeout))
        elif conn.phase == "queued":
            metrics.edge_closed("queue_timeout")
            self.refuse(conn, self.queue_refusal(conn))
        elif conn.phase == "send":
            metrics.edge_closed("send_timeout")
            self.close(conn)
        else:
            self.close(conn)

    def queue_refusal(self, conn: EdgeConn) -> problems.Problem:
        """Why a queued request waited too long: its client's share taken, or every thread."""
        if self.lanes is not None and self.lanes.at_share(conn):
            return problems.over_share(self.lanes.share)
        return problems.queue_timeout(self.limits.queue_timeout)

    def close(self, conn: EdgeConn) -> None:
        """Close ``conn`` for good (idempotent), releasing what it held."""
        if conn.closed:
            return
        if conn.phase == "queued" and self.lanes is not None:
            self.lanes.drop(conn)
        conn.closed = True
        self.conns.discard(conn)
        conn.inbuf, conn.out, conn.decoder, conn.decoded = bytearray(), memoryview(b""), None, 0
        self.budget.release(conn)
        self.watch(conn, 0)
        self.on_close(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def close_all(self) -> None:
        """Close every connection no thread is serving (a stopping worker)."""
        for conn in list(self.conns):
            if conn.phase != "busy":
                self.close(conn)
