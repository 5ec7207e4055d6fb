"""``gateway serve``'s worker: gunicorn's threaded worker, with no thread waiting on a slow client.

gunicorn's ``gthread`` worker hands each accepted connection to a pool thread, which then
blocks reading the request head and body, and writing the answer: a handful of clients
that send half a head, or never read, take every thread. Here the event loop (gunicorn's
selector, in the worker's main thread) does all the waiting (:mod:`gateway.edge_loop`):

- it accepts, at most ``max_connections`` (an idle kept-alive connection is closed to
  make room for a new one) and ``max_connections_per_address``; out of file
  descriptors, it stops accepting for a moment rather than fail;
- it reads each request head and body without blocking, bounded in size and time, and
  answers malformed or oversized requests itself with problem+json;
- it queues each read request for a thread of its lane (:mod:`gateway.edge_lanes`): part
  uploads, content downloads and everything else have their own threads, and on the
  transfer lanes each client its share of them;
- it writes whatever part of an answer the client has not taken yet
  (:mod:`gateway.edge_send`), and reads a pipelined request only once the previous
  answer has left; idle kept-alive connections are closed after ``idle_timeout_seconds``.

Threads run the application, read the rest of a part body (each read bounded, at the
minimum rate) and stream downloads (each write bounded, at the minimum rate). A
connection whose request body was not read to its end is closed, the loop discarding
what the client still sends for a moment so it can read the answer.

Plain HTTP/1.1 only: TLS and HTTP/2 are for a proxy in front, so the worker refuses a
configuration with certificates.
"""

from __future__ import annotations

import errno
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
from gateway import edge_problems as problems
from gateway.config import ServerConfig
from gateway.edge_conn import EdgeConn
from gateway.edge_lanes import Lanes
from gateway.edge_loop import Loop
from gateway.edge_send import DOWNLOAD_HOLD, ResponseWriter

#: Sweeps of the loop's deadlines happen at least this often (seconds).
SWEEP_INTERVAL = 0.2
#: How long accepting stops after ``accept`` found no descriptor or memory left (seconds).
ACCEPT_PAUSE = 0.1
#: ``accept`` errors that mean the process or the system is out of something for now.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_TRANSIENT = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EINTR})
_CLIENT_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

Outcome = tuple[bool, bytes]
"""What a thread hands back: keep the connection alive, and the answer's unsent rest."""


class EdgeWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's ``ThreadWorker`` with every wait on a client in the loop.

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
        self.loop = Loop(self.limits, self._closed, self._watch)
        self.pools: dict[str, futures.ThreadPoolExecutor] = {}
        self._next_sweep = 0.0
        self._resume_accept = 0.0

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        if cfg.is_ssl:
            raise RuntimeError("the gateway worker serves plain HTTP; terminate TLS in a proxy")

    def init_process(self) -> None:
        s = self.server_config
        threads = {edge.REQUEST: s.threads, edge.UPLOAD: s.upload_threads}
        threads[edge.DOWNLOAD] = s.download_threads
        for lane, count in threads.items():
            self.pools[lane] = futures.ThreadPoolExecutor(count, thread_name_prefix=lane)
        self.loop.lanes = Lanes(threads, s.max_transfers_per_client, self._start, self.loop.queued)
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.loop.router = edge.Router(getattr(self.wsgi, "url_map", None))

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        return self.pools[edge.REQUEST]

    def handle_quit(self, sig: int, frame: Any) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False)
        super().handle_quit(sig, frame)

    # -- accepting ----------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        if self.nr_conns >= self.worker_connections and not self.loop.evict_idle():
            self._update_accepting()  # full of connections at work: they wait in the backlog
            return
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno in _TRANSIENT:
                return
            # Out of descriptors or memory (or anything else): the worker lives on, the
            # connections it holds are served, and new ones wait in the backlog meanwhile.
            metrics.edge_accept_paused()
            self.log.warning("cannot accept a connection for now: %s", exc.strerror or exc)
            self._resume_accept = time.monotonic() + ACCEPT_PAUSE
            self._update_accepting()
            return
        conn = EdgeConn(self.cfg, sock, addr, listener.getsockname(), self.limits)
        if self.loop.admit(conn):
            self.nr_conns += 1

    def set_accept_enabled(self, enabled: bool) -> None:
        """gunicorn's switch, taken over: the loop decides (see :meth:`_update_accepting`)."""
        self._update_accepting()

    def _update_accepting(self) -> None:
        """Accept while alive, not paused, and with room (or an idle connection to make room)."""
        room = self.nr_conns < self.worker_connections or self.loop.has_idle()
        want = self.alive and time.monotonic() >= self._resume_accept and room
        super().set_accept_enabled(want)

    # -- the event loop ---------------------------------------------------------------

    def _watch(self, conn: EdgeConn, events: int) -> None:
        """Have the selector watch ``conn`` for ``events`` (0: not at all)."""
        if events == conn.events:
            return
        try:
            if not events:
                self.poller.unregister(conn.sock)
            elif conn.events:
                self.poller.modify(conn.sock, events, partial(self._event, conn))
            else:
                self.poller.register(conn.sock, events, partial(self._event, conn))
        except (KeyError, ValueError, OSError):
            if events:
                raise
        conn.events = events

    def _event(self, conn: EdgeConn, _sock: Any) -> None:
        try:
            if conn.phase == "send":
                self.loop.write(conn)
            else:
                self.loop.advance(conn, None)
        except Exception:  # noqa: BLE001 - the loop must outlive one bad connection
            self.log.exception("closing a connection after an error in the loop")
            self.loop.close(conn)

    def _closed(self, conn: EdgeConn) -> None:
        """The loop has closed ``conn`` for good."""
        self.nr_conns -= 1

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(min(timeout, SWEEP_INTERVAL))
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self.loop.sweep(now, stopping=not self.alive)
        self._update_accepting()

    def murder_keepalived(self, force: bool = False) -> None:
        if force:
            self.loop.close_all()

    def murder_pending(self) -> None:
        """Nothing waits in gunicorn's own queues: the loop sweeps its deadlines itself."""

    # -- the threads ------------------------------------------------------------------

    def _start(self, conn: EdgeConn) -> None:
        """The lanes gave ``conn`` a thread: hand it over and run it there."""
        self.loop.handover(conn)
        try:
            future = self.pools[conn.lane].submit(self.handle, conn)
        except RuntimeError:  # the pool is shutting down
            assert self.loop.lanes is not None
            self.loop.lanes.done(conn)
            self.loop.close(conn)
            return
        future.add_done_callback(lambda fs: self.method_queue.defer(self.finish_request, conn, fs))

    def finish_request(self, conn: EdgeConn, fs: futures.Future[Outcome]) -> None:
        """Back in the loop: write the answer's rest, then the next request, or hang up."""
        assert self.loop.lanes is not None
        self.loop.lanes.done(conn)
        try:
            keep, rest = fs.result() if not fs.cancelled() else (False, b"")
        except Exception:  # noqa: BLE001 - handle() logs; here only the connection's fate
            keep, rest = False, b""
        try:
            if conn.closed or conn.sock.fileno() < 0:
                self.loop.close(conn)
                return
            conn.sock.setblocking(False)
            keep = keep and self.alive
            if keep:  # a pipelined request waits until this answer has left
                conn.inbuf = bytearray(conn.parser.unreader.take_buffered())
            if rest:
                self.loop.send(conn, rest, keep)
            else:
                self.loop.answered(conn, keep)
        except Exception:  # noqa: BLE001 - the loop must outlive one bad connection
            self.log.exception("closing a connection after an error in the loop")
            self.loop.close(conn)

    def handle(self, conn: EdgeConn) -> Outcome:
        """Serve the request whose head (and small body) the loop read. Runs in a pool thread."""
        req = conn.req
        hold = DOWNLOAD_HOLD if conn.lane == edge.DOWNLOAD else self.limits.max_buffered_per_address
        writer = ResponseWriter(conn.sock, self.limits.guard("send"), hold)
        try:
            conn.sock.settimeout(self.limits.body_timeout)
            conn.parser.unreader.live = conn.lane == edge.UPLOAD
            keepalive = self.handle_request(req, conn, writer)
            return keepalive and conn.body_consumed(), writer.finish()
        except edge.Stalled as exc:
            self.log.debug("closing a stalled connection: %s", exc)
        except http_errors.NoMoreData as exc:
            self.log.debug("Ignored premature client disconnection. %s", exc)
        except StopIteration as exc:
            self.log.debug("Closing connection. %s", exc)
        except OSError as exc:
            if exc.errno not in _CLIENT_GONE:
                self.log.exception("Socket error processing request.")
        except Exception as exc:  # noqa: BLE001 - answered as problem+json, as gunicorn does
            return False, self._error_answer(conn, exc)
        finally:
            conn.parser.unreader.live = False
        return False, b""

    def handle_request(self, req: Any, conn: EdgeConn, writer: ResponseWriter) -> bool:
        """gunicorn's ``handle_request``, writing through ``writer`` with the edge's keys."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, writer, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            environ[edge.ENVIRON_BODY_BOUNDED] = conn.lane != edge.UPLOAD
            environ[edge.ENVIRON_RATE_GUARD] = conn.receive_guard
            if conn.continue_pending:
                environ[edge.ENVIRON_CONTINUE] = partial(_send_continue, conn)
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

    def _error_answer(self, conn: EdgeConn, exc: BaseException) -> bytes:
        """gunicorn's error answers, as problem+json, for the loop to send."""
        problem = problems.protocol_problem(exc)
        if problem is None:
            self.log.exception("Error handling request")
            problem = problems.internal_error()
        else:
            address = conn.address
            self.log.warning("Invalid request from ip=%s: %s", address, problem.detail)
        metrics.edge_rejected(problem.status)
        return problems.problem_response(problem)


def _send_continue(conn: EdgeConn) -> None:
    """Tell a client waiting with its part body to send it (once); its rate counts from now."""
    if not conn.continue_pending:
        return
    conn.continue_pending = False
    conn.sock.sendall(_CONTINUE)
    conn.receive_guard.restart()


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
