"""A real ``gateway serve`` process on a free port, set up with the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.tools import require_tool

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    root: Path
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def gateway(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the real ``gateway`` command against this server's configuration."""
        return subprocess.run(
            [str(BIN / "gateway"), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def token(self, org: str, role: str, name: str) -> str:
        return self.gateway(
            "admin", "token", "create", "--org", org, "--role", role, "--name", name
        ).stdout.strip()


def start_server(root: Path, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(root / "gateway.toml"),
        "GATEWAY_SERVER_PORT": str(port),
        "GATEWAY_SERVER_THREADS": "4",
        "GATEWAY_UPLOADS_MIN_PART_SIZE_MIB": "5",
        "GATEWAY_UPLOADS_DEFAULT_PART_SIZE_MIB": "5",
        **(extra_env or {}),
    }
    (root / "gateway.toml").write_text(
        '[database]\nurl = "sqlite:///var/gateway.db"\n[audit]\norigin = "e2e.gateway/audit"\n'
    )
    server = Server(url=f"http://127.0.0.1:{port}", root=root, env=env)
    server.gateway("init")
    for org, kind in (
        ("lab-a", "lab"),
        ("agency-a", "agency"),
        ("agency-b", "agency"),
        ("oversight", "oversight"),
    ):
        server.gateway("admin", "org", "create", org, "--kind", kind)
    server.tokens = {
        "lab": server.token("lab-a", "lab", "alice"),
        "eval": server.token("agency-a", "evaluator", "eve"),
        "eval_b": server.token("agency-b", "evaluator", "bob"),
        "auditor": server.token("oversight", "auditor", "otto"),
    }
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the process
    server.process = subprocess.Popen(
        [str(BIN / "gateway"), "serve", "--port", str(port)],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("gateway serve exited: " + (root / "server.log").read_text())
        try:
            if requests.get(server.url + "/readyz", timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.1)
    server.process.kill()
    raise RuntimeError("gateway serve did not become ready: " + (root / "server.log").read_text())


def stop_server(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path)
    yield s
    stop_server(s)


def age_program() -> str:
    """The real ``age`` program; its absence fails in CI and skips elsewhere."""
    return require_tool("age")
