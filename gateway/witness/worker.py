"""The witness's gunicorn worker: gthread, with every wait on a client bounded in time.

Design note. gunicorn's ``gthread`` worker waits for a connection's first bytes in its event
loop, then hands the connection to a pool thread, which reads the request head and body with
blocking reads that never time out: a few clients that send part of a request and then
trickle (or nothing) hold every thread, and the witness stops answering anyone. Here each
client socket is a :class:`GuardedSocket`:

- every read waits at most ``io_timeout`` seconds, and all the reads of one request (head,
  body, and the drain of an unread body) share a deadline of ``request_timeout`` seconds
  from its first read, so trickling a byte at a time does not help either;
- every write waits at most ``io_timeout`` seconds (``sendall``: for all of its data), so a
  client that stops reading its answer is let go too.

A read past the deadline raises :class:`RequestTimeout`, which gunicorn treats as a client
that went away: the connection is closed without a traceback in the log (the app answers a
body that stops arriving with 408 first). The guard only shortens waits: a timeout gunicorn
sets itself (its graceful close) is kept when it is the shorter.

This bounds how long one client holds a thread, not how many clients there are: run the
witness behind a reverse proxy that buffers whole requests (nginx's default
``proxy_request_buffering on``, with ``client_header_timeout`` and ``client_body_timeout``)
when it faces the Internet, as the README shows.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

T = TypeVar("T")


class RequestTimeout(NoMoreData):  # type: ignore[misc]
    """A client did not send its request, or take its answer, in the time allowed."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def __str__(self) -> str:
        return self.what


class GuardedSocket(socket.socket):
    """A client connection whose reads share one deadline per request and whose writes time out."""

    io_timeout: float = 5.0
    request_timeout: float = 10.0
    _deadline: float | None = None

    @classmethod
    def adopt(cls, sock: socket.socket, io_timeout: float, request_timeout: float) -> GuardedSocket:
        """The same connection as ``sock`` (which is detached), guarded."""
        guarded = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        guarded.io_timeout, guarded.request_timeout = io_timeout, request_timeout
        return guarded

    def new_request(self) -> None:
        """The next read starts a request: its deadline runs from then."""
        self._deadline = None

    def _read_wait(self) -> float:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.request_timeout
        remaining = self._deadline - now
        if remaining <= 0:
            raise RequestTimeout(f"the request took more than {self.request_timeout:g} s")
        return min(self.io_timeout, remaining)

    def _bounded(self, wait: float, what: str, call: Callable[[], T]) -> T:
        before = self.gettimeout()
        self.settimeout(wait if before is None else min(wait, before))
        try:
            return call()
        except TimeoutError:
            raise RequestTimeout(f"the client did not {what} within {wait:g} s") from None
        finally:
            self.settimeout(before)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._bounded(
            self._read_wait(), "send", lambda: super(GuardedSocket, self).recv(bufsize, flags)
        )

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._bounded(
            self._read_wait(),
            "send",
            lambda: super(GuardedSocket, self).recv_into(buffer, nbytes, flags),
        )

    def send(self, data: Any, flags: int = 0) -> int:
        return self._bounded(
            self.io_timeout, "read", lambda: super(GuardedSocket, self).send(data, flags)
        )

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bounded(
            self.io_timeout, "read", lambda: super(GuardedSocket, self).sendall(data, flags)
        )


class WitnessWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker with :class:`GuardedSocket` client connections."""

    io_timeout: float = 5.0
    request_timeout: float = 10.0

    def handle(self, conn: Any) -> Any:
        if not isinstance(conn.sock, GuardedSocket):
            conn.sock = GuardedSocket.adopt(conn.sock, self.io_timeout, self.request_timeout)
        conn.sock.new_request()
        return super().handle(conn)


def worker_class(io_timeout: float, request_timeout: float) -> type[WitnessWorker]:
    """A :class:`WitnessWorker` with these limits, for gunicorn's ``worker_class``."""
    if not 0 < io_timeout <= request_timeout:
        raise ValueError("the I/O timeout must be positive and at most the request timeout")
    attributes = {"io_timeout": io_timeout, "request_timeout": request_timeout}
    return cast(type[WitnessWorker], type("WitnessWorker", (WitnessWorker,), attributes))
