"""A throwaway gateway for end-to-end tests, benchmarks and the demo: real processes.

:class:`LocalGateway` runs ``gateway init``, creates one lab, one agency and one
oversight body with a token per role through the real operator commands, and starts
``gateway serve`` on a free port of 127.0.0.1, all in a temporary directory;
:func:`cli` runs the real ``gateway`` client command against it. It is what the
client's end-to-end tests, ``bench/bench_transfer.py`` and ``make demo`` run against,
from the checkout (it is not part of the package).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import requests

ORGS = {
    "lab": ("frontier-lab", "lab", "alice"),
    "evaluator": ("ai-safety-institute", "agency", "eve"),
    "auditor": ("oversight-board", "oversight", "otto"),
    "admin": ("operator", "operator", "root"),
}


def gateway_command() -> list[str]:
    """The installed ``gateway`` entry point beside this Python, else ``python -m gateway.cli``."""
    script = Path(sys.executable).parent / "gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config_text(root: Path, port: int, part_mib: int) -> str:
    return f"""[server]
host = "127.0.0.1"
port = {port}
threads = 8
log_level = "warning"

[database]
url = "sqlite:///{root / "gateway.db"}"

[storage]
backend = "local"
root = "{root / "objects"}"

[keys]
dir = "{root / "keys"}"

[uploads]
min_part_size_mib = {min(part_mib, 8) if part_mib >= 5 else 5}
default_part_size_mib = {part_mib}

[audit]
origin = "demo.gateway.local/audit"
archive_dir = "{root / "audit"}"

[sweeper]
interval_seconds = 0
"""


class LocalGateway:
    """A gateway on 127.0.0.1 in a temporary directory, with an org and a token per role."""

    def __init__(self, root: Path | None = None, *, part_mib: int = 64, quiet: bool = True) -> None:
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="gateway-demo-")
        self.root = Path(root or self._tmp.name)  # type: ignore[union-attr]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.root / "gateway.toml"
        self.config.write_text(_config_text(self.root, self.port, part_mib))
        self.tokens: dict[str, str] = {}
        self.quiet = quiet
        self.process: subprocess.Popen[bytes] | None = None

    def operator(self, *args: str) -> str:
        """Run an operator command (``gateway --config ... ARGS``); its stdout."""
        done = subprocess.run(
            [*gateway_command(), "--config", str(self.config), *args],
            capture_output=True,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"gateway {' '.join(args)} failed: {done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode().strip()

    def start(self) -> LocalGateway:
        self.operator("init")
        for role, (org, kind, name) in ORGS.items():
            if kind != "operator":  # `gateway init` made the operator's organisation
                self.operator("admin", "org", "create", org, "--kind", kind)
            self.tokens[role] = self.operator(
                "admin", "token", "create", "--org", org, "--role", role, "--name", name
            )
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - kept for the server's life
        self.process = subprocess.Popen(
            [*gateway_command(), "--config", str(self.config), "serve", "--port", str(self.port)],
            stdout=log,
            stderr=log,
            cwd=self.root,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway serve exited: {self.log_tail()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway serve did not become healthy in time: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no server log)"

    def env(self, role: str, home: Path | None = None) -> dict[str, str]:
        """Environment for the ``gateway`` CLI acting as ``role`` (its own config directory)."""
        home = home or self.root / "home" / role
        home.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "GATEWAY_URL": self.url,
            "GATEWAY_TOKEN": self.tokens[role],
            "XDG_CONFIG_HOME": str(home),
            "GATEWAY_CONFIG": "",
            "COLUMNS": "160",
        }

    def stop(self) -> None:
        if self.process is not None:  # the whole process group: gunicorn's master and workers
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.process.wait()
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def cli(
    env: Mapping[str, str],
    *args: str,
    stdin: bytes | None = None,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the client ``gateway ARGS`` with ``env``."""
    done = subprocess.run(
        [*gateway_command(), *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        check=False,
        cwd=cwd,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"gateway {shlex.join(args)} failed ({done.returncode}): "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return done


def write_weights(path: Path, size: int, seed: bytes = b"demo") -> str:
    """A deterministic pseudo-random file of ``size`` bytes, written in 1 MiB blocks; its SHA-256."""
    digest = hashlib.sha256()
    block = hashlib.shake_256(seed).digest(1 << 20)
    with open(path, "wb") as fh:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            piece = (
                hashlib.sha256(written.to_bytes(8, "big")).digest() + piece[32:]
                if len(piece) > 32
                else piece
            )
            fh.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
