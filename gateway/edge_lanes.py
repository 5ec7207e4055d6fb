"""Which ready request a free pool thread takes: first come, first served, within each client's share.

Each lane (``request``, ``upload``, ``download``; see :class:`gateway.edge.Router`) has a
fixed number of threads. A request whose lane has none free waits in the loop, in the
lane's queue, where its bytes still count against its address and the loop
(:mod:`gateway.edge_budget`) and its wait is bounded (``queue_timeout``). Nothing waits
in an executor's own unbounded queue.

On the two transfer lanes a client (:func:`gateway.edge.client_key`: a principal's token,
a signed URL's grant, else an address) may hold at most ``max_transfers_per_client``
threads at once; its further transfers wait until one of its own ends, while others'
go ahead. One lab sending parts, or one evaluator downloading, at whatever rate, can so
never hold a whole lane. The share is kept by the edge, before any thread is taken, and
by token rather than by principal or organisation: the edge does not read the database,
and tokens are issued per principal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

from gateway import edge

_SHARED = (edge.UPLOAD, edge.DOWNLOAD)


class Waiting(Protocol):
    """A connection as the lanes see it."""

    lane: str
    key: str


W = TypeVar("W", bound=Waiting)


class Lanes(Generic[W]):
    """The threads of each lane, who holds them, and who waits for one.

    ``start(conn)`` runs ``conn``'s request on a thread (it is called with the thread
    counted as taken); ``wait(conn)`` tells the loop ``conn`` is queued.
    """

    def __init__(
        self,
        threads: Mapping[str, int],
        share: int,
        start: Callable[[W], None],
        wait: Callable[[W], None] = lambda conn: None,
    ) -> None:
        self.threads = dict(threads)
        self.share = share
        self.start, self.wait = start, wait
        self.running = dict.fromkeys(self.threads, 0)
        self.queues: dict[str, deque[W]] = {lane: deque() for lane in self.threads}
        self.held: dict[tuple[str, str], int] = {}

    def offer(self, conn: W) -> None:
        """A request is ready: run it now if its lane and its client's share allow, else queue it."""
        self.queues[conn.lane].append(conn)
        self._pump(conn.lane)
        if any(c is conn for c in self.queues[conn.lane]):
            self.wait(conn)

    def done(self, conn: W) -> None:
        """``conn``'s thread is free again: the next eligible request takes it."""
        self.running[conn.lane] -= 1
        key = (conn.lane, conn.key)
        if key in self.held:
            self.held[key] -= 1
            if self.held[key] <= 0:
                del self.held[key]
        self._pump(conn.lane)

    def drop(self, conn: W) -> None:
        """``conn`` leaves its queue unserved (closed, refused or past its wait)."""
        queue = self.queues[conn.lane]
        for i, waiting in enumerate(queue):
            if waiting is conn:
                del queue[i]
                return

    def at_share(self, conn: W) -> bool:
        """Whether ``conn``'s client holds as many threads of its lane as it may."""
        if not self.share or conn.lane not in _SHARED:
            return False
        return self.held.get((conn.lane, conn.key), 0) >= self.share

    def _pump(self, lane: str) -> None:
        queue = self.queues[lane]
        while queue and self.running[lane] < self.threads[lane]:
            chosen = next((c for c in queue if not self.at_share(c)), None)
            if chosen is None:
                return
            self.drop(chosen)
            self.running[lane] += 1
            if lane in _SHARED:
                key = (lane, chosen.key)
                self.held[key] = self.held.get(key, 0) + 1
            self.start(chosen)
