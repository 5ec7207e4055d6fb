"""How a pool thread writes a response without waiting on a client that does not read.

gunicorn's ``Response`` writes its head and body to :class:`ResponseWriter`, which keeps
them in memory up to ``hold`` bytes. What is kept when the application is done goes out
in one non-blocking send; the rest is the event loop's to write (``send`` phase of
:mod:`gateway.edge_loop`), bounded there by ``send_timeout`` and the minimum rate. So a
thread serving an ordinary answer never waits on its client, however many requests the
client pipelines without reading.

Only an answer larger than ``hold`` (a download) is written by its thread as it is
produced: each write waits at most ``send_timeout`` and the transfer must keep to the
minimum rate, counted from its first write, not from the start of the request (an
upload that took long to arrive is not a slow reader).
"""

from __future__ import annotations

import socket
from typing import Any

from gateway import edge

#: A download's answer up to this size is kept for the loop; a larger one is streamed by
#: its thread (the content lane's threads are there to stream).
DOWNLOAD_HOLD = 64 << 10
_WRITE = 4 << 20


class ResponseWriter:
    """The socket a response is written to, holding up to ``hold`` bytes for the loop."""

    def __init__(self, sock: socket.socket, guard: edge.RateGuard, hold: int) -> None:
        self._sock, self._guard, self._hold = sock, guard, hold
        self._kept = bytearray()
        self._streaming = False

    def sendall(self, data: bytes) -> None:
        if not self._streaming and len(self._kept) + len(data) <= self._hold:
            self._kept += data
            return
        if not self._streaming:
            self._streaming = True
            self._guard.restart()  # the rate is the client's reading, from its first byte on
        if self._kept:
            self._write(memoryview(self._kept))
            self._kept = bytearray()
        self._write(memoryview(data))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def _write(self, view: memoryview) -> None:
        if self._sock.gettimeout() != self._guard.timeout:
            self._sock.settimeout(self._guard.timeout)
        while view:
            try:
                sent = self._sock.send(view[:_WRITE])
            except TimeoutError:
                self._guard.trip("timeout", "the client stopped reading the response")
            self._guard.check(sent)
            view = view[sent:]

    def finish(self) -> bytes:
        """Send what is kept without waiting; what the socket did not take, for the loop."""
        if not self._kept:
            return b""
        self._sock.setblocking(False)
        try:
            sent = self._sock.send(self._kept)
        except (BlockingIOError, InterruptedError):
            sent = 0
        rest = bytes(self._kept[sent:])
        self._kept = bytearray()
        return rest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
