"""``gateway serve``'s worker: gunicorn's threaded worker, with no thread waiting on a slow client.

gunicorn's ``gthread`` worker hands each accepted connection to a pool thread, which then
blocks reading the request head and body: a handful of clients that send half a head
take every thread. Here the event loop (gunicorn's selector, in the worker's main
thread) does all the waiting:

- it accepts, reads each request head without blocking, bounded in size
  (``max_header_bytes``) and time (``header_timeout_seconds``), and parses it with
  gunicorn's own parser; a malformed head is answered with problem+json from the loop;
- bodies of every request but a part upload are small: the loop reads them whole, at
  most ``max_json_bytes`` raw bytes whatever the framing, within ``body_timeout_seconds``,
  and answers 413 past the limit without reading on;
- a part upload (``PUT /v1/uploads/<id>/parts/<n>``) waits in the loop for its first
  ``PART_START_BYTES`` (:mod:`gateway.edge_conn`), then goes to a thread of its own
  lane, which reads the rest with a per-read timeout and the minimum rate
  (:mod:`gateway.api.body`); a part no larger is read whole like any small body;
- idle kept-alive connections are closed after ``idle_timeout_seconds``.

Responses are written by the threads with ``send_timeout_seconds`` per write and the
same minimum rate, so a client that stops reading holds a thread for a bounded time.
Part uploads and content downloads each have their own threads (``upload_threads``,
``download_threads``): clients holding all of those still leave ``threads`` for the
rest of the API. A connection whose request body was not read to its end is closed, the
loop discarding what the client still sends for a moment so it can read the answer.
The protocol pieces (lanes, limits, rate rule, chunked framing, problem bodies) are in
:mod:`gateway.edge`; the loop's per-connection state is in :mod:`gateway.edge_conn`.

Plain HTTP/1.1 only: TLS and HTTP/2 are for a proxy in front, so the worker refuses a
configuration with certificates.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import sys
import time
from collections.abc import Callable
from concurrent import futures
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.workers.gthread import ThreadWorker

from gateway import edge, metrics
from gateway.config import ServerConfig
from gateway.edge_conn import EdgeConn, Loop

#: Sweeps of the loop's deadlines happen at least this often (seconds).
SWEEP_INTERVAL = 0.2


class SendGuard:
    """The socket a response is written to: each write bounded in time and rate."""

    def __init__(self, sock: socket.socket, guard: edge.RateGuard) -> None:
        self._sock, self._guard = sock, guard

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        if self._sock.gettimeout() != self._guard.timeout:
            self._sock.settimeout(self._guard.timeout)
        while view:
            try:
                sent = self._sock.send(view[: 4 << 20])
            except TimeoutError:
                self._guard.trip("timeout", "the client stopped reading the response")
            self._guard.check(sent)
            view = view[sent:]

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class EdgeWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's ``ThreadWorker`` with the request heads and small bodies read in the loop.

    Use :meth:`bound` to get the class for one configuration (gunicorn makes the workers).
    """

    server_config: ServerConfig = ServerConfig()
    alive: bool
    nr: int

    @classmethod
    def bound(cls, server_config: ServerConfig) -> type[EdgeWorker]:
        """This worker class, for gunicorn's ``worker_class``, with ``[server]`` settings."""
        return type(cls.__name__, (cls,), {"server_config": server_config})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = edge.EdgeLimits.from_config(self.server_config)
        self.loop = Loop(self.limits, self._closed)
        self.pools: dict[str, futures.ThreadPoolExecutor] = {}
        self._next_sweep = 0.0

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        if cfg.is_ssl:
            raise RuntimeError("the gateway worker serves plain HTTP; terminate TLS in a proxy")

    def init_process(self) -> None:
        s = self.server_config
        for lane, count in (
            (edge.REQUEST, s.threads),
            (edge.UPLOAD, s.upload_threads),
            (edge.DOWNLOAD, s.download_threads),
        ):
            self.pools[lane] = futures.ThreadPoolExecutor(count, thread_name_prefix=lane)
        super().init_process()

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        return self.pools[edge.REQUEST]

    def handle_quit(self, sig: int, frame: Any) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False)
        super().handle_quit(sig, frame)

    # -- the event loop ---------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = EdgeConn(self.cfg, sock, addr, listener.getsockname(), self.limits)
        self._watch(conn)

    def _watch(self, conn: EdgeConn) -> None:
        """Let the loop read this connection (a new one, or one back from a thread)."""
        self.loop.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        if conn.inbuf:  # a pipelined request arrived with the last one
            self._advance(conn, b"")

    def _readable(self, conn: EdgeConn, _sock: Any) -> None:
        self._advance(conn, None)

    def _advance(self, conn: EdgeConn, data: bytes | None) -> None:
        try:
            ready = self.loop.advance(conn, data)
        except Exception:  # noqa: BLE001 - the loop must outlive one bad connection
            self.log.exception("closing a connection after an error in the loop")
            self.loop.close(conn)
            return
        if ready:
            self.poller.unregister(conn.sock)
            self.loop.remove(conn)
            self.enqueue_req(conn)

    def _closed(self, conn: EdgeConn) -> None:
        """The loop has closed ``conn`` for good."""
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(min(timeout, SWEEP_INTERVAL))
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self.loop.sweep(now, stopping=not self.alive)

    def murder_keepalived(self, force: bool = False) -> None:
        if force:
            self.loop.close_all()

    def murder_pending(self) -> None:
        """Nothing waits in gunicorn's own queues: the loop sweeps its deadlines itself."""

    def enqueue_req(self, conn: EdgeConn) -> None:
        def done(fut: futures.Future[bool]) -> None:
            self.method_queue.defer(self.finish_request, conn, fut)

        self.pools[conn.lane].submit(self.handle, conn).add_done_callback(done)

    def finish_request(self, conn: EdgeConn, fs: futures.Future[bool]) -> None:
        """Back in the loop: keep the connection for its next request, or close it."""
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:  # noqa: BLE001 - handle() logs; here only the connection's fate
            keep = False
        try:
            if conn.sock.fileno() < 0:  # closed on the way
                self.nr_conns -= 1
                return
            conn.sock.setblocking(False)
            if keep and self.alive:
                conn.idle(conn.parser.unreader.take_buffered())
                self._watch(conn)
                return
            self.loop.add(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
            self.loop.linger(conn)
        except Exception:  # noqa: BLE001 - the loop must outlive one bad connection
            self.log.exception("closing a connection after an error in the loop")
            self.loop.close(conn)

    # -- the threads ------------------------------------------------------------------

    def handle(self, conn: EdgeConn) -> bool:
        """Serve the request whose head (and small body) the loop read. Runs in a pool thread."""
        req = conn.req
        try:
            conn.sock.settimeout(self.limits.body_timeout)
            conn.parser.unreader.live = conn.lane == edge.UPLOAD
            keepalive = self.handle_request(req, conn)
            return keepalive and conn.body_consumed()
        except edge.Stalled as exc:
            metrics.edge_closed(exc)
            self.log.debug("closing a stalled connection: %s", exc)
        except http_errors.NoMoreData as exc:
            self.log.debug("Ignored premature client disconnection. %s", exc)
        except StopIteration as exc:
            self.log.debug("Closing connection. %s", exc)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as exc:  # noqa: BLE001 - answered as problem+json, as gunicorn does
            self.handle_error(req, conn.sock, conn.client, exc)
        finally:
            conn.parser.unreader.live = False
        return False

    def handle_request(self, req: Any, conn: EdgeConn) -> bool:
        """gunicorn's ``handle_request``, writing through :class:`SendGuard` with the edge's keys."""
        environ: dict[str, Any] = {}
        resp = None
        sender = SendGuard(conn.sock, self.limits.guard("send"))
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, sender, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            environ[edge.ENVIRON_BODY_BOUNDED] = conn.lane != edge.UPLOAD
            environ[edge.ENVIRON_RATE_GUARD] = conn.receive_guard
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive:
                resp.force_close()
            respiter = self.wsgi(environ, _closing_if_unread(conn, resp))
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            if resp.should_close():
                return False
        except OSError:
            util.reraise(*sys.exc_info())
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - gunicorn's rule: a hook never breaks a request
                self.log.exception("Exception in post_request hook")
        return True

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's error answers, as problem+json instead of an HTML page."""
        problem = edge.protocol_problem(exc)
        if problem is None:
            self.log.exception("Error handling request")
            problem = edge.internal_error()
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], problem.detail)
        metrics.edge_rejected(problem.status)
        try:
            client.settimeout(self.limits.send_timeout)
            client.sendall(edge.problem_response(problem))
        except OSError:
            self.log.debug("Failed to send error message.")


def _closing_if_unread(conn: EdgeConn, resp: Any) -> Callable[..., Any]:
    """``start_response`` that answers ``Connection: close`` when a part body was left unread.

    The connection is closed after such an answer whatever it says; saying so keeps a
    client from sending its next request on it.
    """

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        result = resp.start_response(status, headers, exc_info)
        if conn.lane == edge.UPLOAD and not conn.body_consumed():
            resp.force_close()
        return result

    return start_response
