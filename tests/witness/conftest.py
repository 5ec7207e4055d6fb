"""A real ``python -m gateway.witness serve`` process on a free port, and a small test log."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from gateway.audit import cosignature, note
from gateway.audit.note import Checkpoint, Verifier
from tests.audit import reference


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestLog:
    """A log held in memory: leaves, checkpoints signed by its key, proofs from the naive tree."""

    __test__ = False

    def __init__(self, origin: str = "gateway.test/log", seed: bytes = bytes(32)) -> None:
        self.origin = origin
        self.signer = note.Signer(origin, seed)
        self.leaves: list[bytes] = []

    def grow(self, n: int, tag: str = "entry") -> None:
        start = len(self.leaves)
        self.leaves += [f"{tag} {i}".encode() for i in range(start, start + n)]

    def checkpoint(self, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        cp = Checkpoint(self.origin, size, reference.mth(self.leaves[:size]))
        return note.sign_checkpoint(cp, self.signer)

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.leaves) if new is None else new
        return reference.proof(old, self.leaves[:new])

    @property
    def vkey(self) -> str:
        return self.signer.verifier_key


@dataclass
class WitnessProcess:
    root: Path
    name: str
    logs: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    keys: list[Verifier] = field(default_factory=list)
    options: list[str] = field(default_factory=lambda: ["--threads", "8"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key_file(self) -> Path:
        return self.root / "witness.key"

    def prepare(self) -> None:
        made = cosignature.create_cosigner_file(self.key_file, self.name)
        self.keys = [c.verifier for c in made]
        (self.root / "state").mkdir()
        (self.root / "state" / "logs").write_text(
            "logs/v0\n" + "".join(f"vkey {v}\n" for v in self.logs)
        )

    def start(self) -> None:
        log = open(self.root / "witness.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.witness", "serve", "--key", str(self.key_file),
             "--state", str(self.root / "state"), "--port", str(self.port), *self.options],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("witness exited: " + (self.root / "witness.log").read_text())
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("witness did not start: " + (self.root / "witness.log").read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def post(self, body: bytes | str) -> requests.Response:
        data = body.encode() if isinstance(body, str) else body
        return requests.post(self.url + "/add-checkpoint", data=data, timeout=30)


def start_witness(root: Path, logs: list[str], name: str = "witness.test/w1") -> WitnessProcess:
    root.mkdir(parents=True, exist_ok=True)
    w = WitnessProcess(root, name, logs)
    w.prepare()
    w.start()
    return w


@pytest.fixture
def test_log() -> TestLog:
    return TestLog()


@pytest.fixture
def witness(tmp_path: Path, test_log: TestLog) -> Iterator[WitnessProcess]:
    w = start_witness(tmp_path / "w1", [test_log.vkey])
    yield w
    w.stop()
