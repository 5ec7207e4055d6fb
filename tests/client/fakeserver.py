"""A tiny local HTTP server standing in for the gateway's part uploads, with faults on demand."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PartStore:
    def __init__(self, faults: dict[int, list[str]] | None = None) -> None:
        self.parts: dict[int, bytes] = {}
        self.faults = faults or {}  # part number -> faults to inject, one per attempt
        self.attempts: dict[int, int] = {}
        self.lock = threading.Lock()


def _handler(store: PartStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/problem+json" if status >= 400 else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # noqa: N802
            number = int(self.path.rsplit("/", 1)[1])
            length = int(self.headers["Content-Length"])
            with store.lock:
                store.attempts[number] = store.attempts.get(number, 0) + 1
                pending = store.faults.get(number, [])
                fault = pending.pop(0) if pending else None
            if fault == "drop":
                self.rfile.read(min(length, 1000))
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = self.rfile.read(length)
            if fault == "503":
                self._answer(
                    503, {"title": "Service unavailable", "status": 503, "detail": "try later"}
                )
                return
            if fault == "429":
                data = json.dumps({"status": 429, "detail": "slow down"}).encode()
                self.send_response(429)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if fault == "403":
                self._answer(
                    403, {"title": "Forbidden", "status": 403, "detail": "upload u1 is not yours"}
                )
                return
            if hashlib.sha256(body).hexdigest() != self.headers["X-Content-SHA256"]:
                self._answer(
                    400, {"type": "x/digest-mismatch", "status": 400, "detail": "digest mismatch"}
                )
                return
            with store.lock:
                store.parts[number] = body
            self._answer(
                200,
                {"number": number, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()},
            )

    return Handler


def serving(store: PartStore) -> AbstractContextManager[str]:
    return _serve(_handler(store))


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ContentStore:
    """One age file served at ``/v1/artifacts/a1/content`` with Range; drops on demand."""

    def __init__(
        self, data: bytes, drop_after: list[int] | None = None, content_range: str | None = None
    ) -> None:
        self.data = data
        self.drop_after = drop_after or []  # per request: bytes sent before the connection drops
        self.ranges: list[str] = []
        self.content_range = content_range  # sent instead of the true one (a lying gateway)


def _content_handler(store: ContentStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range", "")
            store.ranges.append(rng)
            start, end = 0, len(store.data) - 1
            if rng.startswith("bytes="):
                first, _, last = rng[6:].partition("-")
                start, end = int(first), min(int(last), end) if last else end
            body = store.data[start : end + 1]
            self.send_response(206 if rng else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if rng:
                told = store.content_range or f"bytes {start}-{end}/{len(store.data)}"
                self.send_header("Content-Range", told)
            self.end_headers()
            cut = store.drop_after.pop(0) if store.drop_after and len(body) > 100_000 else None
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


def serving_content(store: ContentStore) -> AbstractContextManager[str]:
    return _serve(_content_handler(store))


class Routes:
    """A gateway that answers every request from a fixed table: ``(METHOD, path)`` to
    ``(status, JSON body)``; what it was asked is kept in ``seen``. It stands in for a
    gateway that lies, which the real one cannot be made to do."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str]] = []


def _routes_handler(store: Routes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            store.seen.append((self.command, path))
            status, body = store.routes.get(
                (self.command, path), (404, {"status": 404, "detail": f"no route {path}"})
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            kind = "application/problem+json" if status >= 400 else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _any  # noqa: N815

    return Handler


def serving_routes(store: Routes) -> AbstractContextManager[str]:
    return _serve(_routes_handler(store))
