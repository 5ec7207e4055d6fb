"""The rules of the server's edge, apart from the event loop that applies them.

:mod:`gateway.worker` owns the sockets; this module holds what it decides with, each
piece testable without a server: which lane a request goes to (:class:`Router`), whose
transfer it is (:func:`client_key`), the limits taken from ``[server]``
(:class:`EdgeLimits`), the minimum-rate rule (:class:`RateGuard`) and how many file
descriptors the limits need (:func:`claim_descriptors`). The answers the edge gives
itself are in :mod:`gateway.edge_problems`, chunked bodies in :mod:`gateway.edge_chunked`.

The environ keys below are how the application learns what the edge did.
"""

from __future__ import annotations

import hashlib
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote

from gateway import metrics
from gateway.config import ConfigError, ServerConfig

#: ``environ`` key: True when the edge read the whole request body before the
#: application ran, at most ``max_json_bytes`` raw bytes, so ``wsgi.input`` never blocks.
ENVIRON_BODY_BOUNDED = "gateway.edge.body_bounded"
#: ``environ`` key: the :class:`RateGuard` that part-body reads must report to.
ENVIRON_RATE_GUARD = "gateway.edge.rate_guard"
#: ``environ`` key: for a part whose client sent ``Expect: 100-continue``, a callable
#: that sends ``100 Continue`` (once); the application calls it when it is ready to
#: read the body, after its checks, so a refused client is never invited to send it.
ENVIRON_CONTINUE = "gateway.edge.send_continue"

REQUEST, UPLOAD, DOWNLOAD = "request", "upload", "download"
LANES = (REQUEST, UPLOAD, DOWNLOAD)
#: The application's endpoints with a lane of their own; every other one is ``REQUEST``.
ENDPOINT_LANES = {
    "uploads.put_part": UPLOAD,
    "content.download": DOWNLOAD,
    "content.signed": DOWNLOAD,
}
_PART = re.compile(r"/v1/uploads/[^/]+/parts/[^/]+")
_CONTENT = re.compile(r"/v1/artifacts/[^/]+/content|/download/[^/]+")


def lane_of(method: str, path: str) -> str:
    """The lane of a request by its percent-decoded path, for an application without a URL map."""
    if method == "PUT" and _PART.fullmatch(path):
        return UPLOAD
    if method in ("GET", "HEAD") and _CONTENT.fullmatch(path):
        return DOWNLOAD
    return REQUEST


class Router:
    """Which thread pool a request is served from: part bodies and content have their own.

    Each lane has its own threads, so clients holding every upload or download thread
    still leave the rest of the API (health checks, metadata, small parts) answering.
    The lane is that of the endpoint the application will route the request to, found
    with the application's own URL map on the percent-decoded path, as Flask routes it:
    however a path is spelt, a download is served by a download thread.
    """

    def __init__(self, url_map: Any = None) -> None:
        self._adapter = url_map.bind("gateway") if url_map is not None else None

    def lane(self, method: str, raw_path: str) -> str:
        path = unquote(raw_path, errors="replace")
        if self._adapter is None:
            return lane_of(method, path)
        try:
            endpoint, _args = self._adapter.match(path, method)
        except Exception:  # noqa: BLE001 - no route, wrong method or a redirect: a plain request
            return REQUEST
        return ENDPOINT_LANES.get(str(endpoint), REQUEST)


def client_key(headers: list[tuple[str, str]], query: str, address: str) -> str:
    """Whose transfer a request is, for the per-client share of a lane's threads.

    The bearer token's hash (a principal's; tokens are issued per principal), else a
    signed URL's grant, else the client address. Nothing is checked here: a key that
    names nobody is refused by the application as soon as its thread runs.
    """
    for name, value in headers:
        if name == "AUTHORIZATION":
            return "t:" + hashlib.sha256(value.encode("latin-1", "replace")).hexdigest()[:32]
    grant = parse_qs(query[:4096]).get("grant")
    if grant:
        return "g:" + hashlib.sha256(grant[0].encode()).hexdigest()[:32]
    return "a:" + address


@dataclass(frozen=True)
class EdgeLimits:
    """The ``[server]`` bounds the worker enforces, in the units it uses (seconds, bytes)."""

    header_timeout: float
    idle_timeout: float
    body_timeout: float
    send_timeout: float
    queue_timeout: float
    min_rate: int
    grace: float
    max_header_bytes: int
    max_json_bytes: int
    max_buffered_bytes: int
    max_buffered_per_address: int
    max_connections_per_address: int
    max_transfers_per_client: int

    @classmethod
    def from_config(cls, s: ServerConfig) -> EdgeLimits:
        return cls(
            header_timeout=float(s.header_timeout_seconds),
            idle_timeout=float(s.idle_timeout_seconds),
            body_timeout=float(s.body_timeout_seconds),
            send_timeout=float(s.send_timeout_seconds),
            queue_timeout=float(s.queue_timeout_seconds),
            min_rate=s.min_rate_bytes_per_second,
            grace=float(s.min_rate_grace_seconds),
            max_header_bytes=s.max_header_bytes,
            max_json_bytes=s.max_json_bytes,
            max_buffered_bytes=s.max_buffered_bytes,
            max_buffered_per_address=s.max_buffered_bytes_per_address,
            max_connections_per_address=s.max_connections_per_address,
            max_transfers_per_client=s.max_transfers_per_client,
        )

    def guard(self, direction: str) -> RateGuard:
        """A guard for one transfer: ``"receive"`` (a request body) or ``"send"`` (a response)."""
        timeout = self.body_timeout if direction == "receive" else self.send_timeout
        return RateGuard(self.min_rate, self.grace, direction, timeout)


#: File descriptors a worker needs besides its clients' sockets: its listeners, logs,
#: database and store handles (about 60 when idle), and a few per thread for the
#: database connection, files and store connections a request may hold.
DESCRIPTORS_BASE = 128
DESCRIPTORS_PER_THREAD = 4


class DescriptorLimit(ConfigError):
    """The process may open fewer files than ``max_connections`` needs."""

    hint = "raise the limit (ulimit -n, systemd LimitNOFILE=) or lower server.max_connections"


def descriptors_needed(s: ServerConfig) -> int:
    """Open files one worker needs at most: its clients' sockets and its own."""
    threads = s.threads + s.upload_threads + s.download_threads
    return s.max_connections + DESCRIPTORS_BASE + DESCRIPTORS_PER_THREAD * threads


def claim_descriptors(s: ServerConfig) -> int:
    """Raise this process's open-file limit to its hard limit; refuse limits it cannot hold.

    Each worker holds up to ``max_connections`` client sockets besides its own files;
    past the limit ``accept`` fails. Returns the soft limit now in force; raises
    :class:`DescriptorLimit` when it is below :func:`descriptors_needed`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = descriptors_needed(s)
    unlimited = resource.RLIM_INFINITY
    target = hard if hard != unlimited else max(soft, need)
    if soft != unlimited and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # the check below says what is missing
    if soft != unlimited and soft < need:
        raise DescriptorLimit(
            f"server.max_connections: {s.max_connections} connections need about {need} open"
            f" files per worker, but this process may open only {soft}"
        )
    return int(soft)


class Stalled(TimeoutError):
    """A client moved its bytes slower than the edge allows; the connection is dropped.

    ``reason`` is ``"timeout"`` (nothing moved for a whole timeout) or ``"min_rate"``
    (bytes moved, but fewer than the minimum rate over a window). ``direction`` is
    ``"receive"`` or ``"send"``. Distinct from a client that closed, which reads as EOF.
    """

    def __init__(self, reason: str, direction: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.direction = reason, direction


class RateGuard:
    """The minimum-rate rule for one transfer: after a grace period, each window must move enough.

    Windows are ``grace`` seconds long and start when the transfer does; from the end of
    the first one on, every window must move at least ``min_rate * grace`` bytes. A fast
    start buys no credit for a later trickle. ``min_rate`` 0 turns the rule off (the
    per-read timeouts still hold). ``timeout`` is the longest a single read or write of
    this transfer may wait: the socket's timeout while it runs.
    """

    def __init__(
        self,
        min_rate: int,
        grace: float,
        direction: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_rate, self.grace, self.direction = min_rate, grace, direction
        self.timeout, self.clock = timeout, clock
        self.restart()

    def restart(self) -> None:
        self.window_start = self.clock()
        self.window_bytes = 0
        # Why it tripped, never the exception itself: a kept exception's traceback would
        # hold the transfer's frames (and their buffers) in a cycle until a GC pass.
        self.tripped: tuple[str, str] | None = None

    def check(self, moved: int = 0) -> None:
        """Count ``moved`` bytes; raise :class:`Stalled` when a finished window fell short."""
        if self.tripped is not None:
            raise Stalled(self.tripped[0], self.direction, self.tripped[1])
        self.window_bytes += moved
        if self.min_rate <= 0:
            return
        elapsed = self.clock() - self.window_start
        if elapsed < self.grace:
            return
        if self.window_bytes < self.min_rate * elapsed:
            self.trip(
                "min_rate",
                f"{self.window_bytes} bytes in {elapsed:.1f}s, below the minimum rate"
                f" of {self.min_rate} bytes/s",
            )
        self.window_start += elapsed
        self.window_bytes = 0

    def trip(self, reason: str, detail: str) -> NoReturn:
        """Stop the transfer: counted in ``/metrics`` once, then :class:`Stalled` from here on."""
        exc = Stalled(reason, self.direction, detail)
        if self.tripped is None:
            metrics.edge_closed(exc)
        self.tripped = (reason, detail)
        raise exc
