"""``make demo``: the whole story against a local gateway, narrated, in about a minute.

A lab pushes a 256 MiB weights file and a credential, an evaluator asks for access,
the lab approves, the evaluator pulls with the CLI and again as a raw age file that
the standard ``age`` program decrypts, and an auditor verifies the log and lists the
evaluator's accesses. Every step runs the real ``gateway`` command against a real
``gateway serve`` on a free port, in a temporary directory.

:class:`LocalGateway` (a throwaway gateway with one lab, one agency, one oversight
body and a token per role) is also what the client's end-to-end tests and
``bench/bench_transfer.py`` run against.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
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


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"\n\033[1m[{time.monotonic() - self.started:5.1f}s] {text}\033[0m", flush=True)

    def run(
        self,
        who: str,
        env: Mapping[str, str],
        *args: str,
        stdin: bytes | None = None,
        show: bool = True,
    ) -> str:
        print(f"  {who}$ gateway {shlex.join(args)}", flush=True)
        done = cli(env, *args, stdin=stdin)
        out = done.stdout.decode(errors="replace").rstrip()
        if show and out:
            print("    " + out.replace("\n", "\n    "), flush=True)
        for line in done.stderr.decode(errors="replace").splitlines():
            print(f"    {line}", flush=True)
        return out


def story(gw: LocalGateway, work: Path, size: int) -> None:
    say = Narrator()
    lab, ev, au = gw.env("lab"), gw.env("evaluator"), gw.env("auditor")
    say.step(f"A local gateway is running at {gw.url} (temp dir {gw.root})")
    say.step("The lab makes a signing key and registers its public half")
    say.run("lab", lab, "whoami")
    say.run("lab", lab, "keygen", "--type", "signing", "-o", str(work / "lab-signing.key"))
    weights = work / "model.safetensors"
    say.step(
        f"The lab generates {size >> 20} MiB of weights and pushes them, encrypted on its own machine"
    )
    digest = write_weights(weights, size)
    print(f"    sha256 {digest}")
    share = ORGS["evaluator"][0]
    wid = say.run(
        "lab",
        lab,
        "push",
        str(weights),
        "--name",
        "frontier-model-v1",
        "--kind",
        "weights",
        "--share-with",
        share,
        "--signing-key",
        str(work / "lab-signing.key"),
    )
    credential = work / "endpoint-credential.txt"
    credential.write_text(
        "API_KEY=sk-preview-0123456789abcdef\nENDPOINT=https://preview.frontier-lab.example/v1\n"
    )
    cid = say.run(
        "lab",
        lab,
        "push",
        str(credential),
        "--name",
        "preview-endpoint",
        "--kind",
        "credential",
        "--share-with",
        share,
        "--signing-key",
        str(work / "lab-signing.key"),
    )
    say.step("An auditor keeps today's checkpoint, to prove later that the log only grew")
    say.run("auditor", au, "audit", "checkpoint", "--save", str(work / "checkpoint-1.txt"))
    say.step("The evaluator makes an age identity, sees the artifacts and asks for access")
    say.run("evaluator", ev, "keygen", "--type", "age", "-o", str(work / "evaluator.agekey"))
    say.run("evaluator", ev, "artifacts")
    rid = say.run(
        "evaluator", ev, "request", wid, "--justification", "pre-deployment cyber evaluation"
    )
    rid2 = say.run(
        "evaluator", ev, "request", cid, "--justification", "pre-deployment cyber evaluation"
    )
    say.step("The lab reviews the requests and approves them")
    say.run("lab", lab, "requests", "--state", "pending")
    say.run("lab", lab, "approve", rid, "--hours", "48")
    say.run("lab", lab, "approve", rid2, "--hours", "48")
    say.step(
        "The evaluator pulls the weights: decrypted, checked against the lab's signed manifest"
    )
    out = work / "pulled.safetensors"
    say.run(
        "evaluator", ev, "pull", wid, "-o", str(out), "--identity", str(work / "evaluator.agekey")
    )
    print(f"    identical to the lab's file: {sha256_file(out) == digest}")
    say.step("Again as a raw age file, decrypted by the standard age program")
    raw = work / "pulled.age"
    say.run("evaluator", ev, "pull", wid, "-o", str(raw), "--raw")
    age_out = work / "pulled-by-age.safetensors"
    print(f"  evaluator$ age -d -i evaluator.agekey -o {age_out.name} {raw.name}")
    subprocess.run(
        ["age", "-d", "-i", str(work / "evaluator.agekey"), "-o", str(age_out), str(raw)],
        check=True,
    )
    print(f"    identical to the lab's file: {sha256_file(age_out) == digest}")
    say.run("evaluator", ev, "pull", cid, "-o", "-", "--identity", str(work / "evaluator.agekey"))
    _audit(say, gw, au, work)


def _audit(say: Narrator, gw: LocalGateway, au: Mapping[str, str], work: Path) -> None:
    say.step(
        "The auditor verifies the whole log from its leaves, and that it extends the saved checkpoint"
    )
    vkey = requests.get(gw.url + "/v1/audit/key", timeout=10).text.strip()
    (work / "audit.vkey").write_text(vkey + "\n")
    print(f"    verifier key (handed to the auditor by the operator): {vkey}")
    say.run("auditor", au, "audit", "export", "-o", str(work / "audit-export.jsonl"))
    say.run(
        "auditor",
        au,
        "audit",
        "verify",
        "--key",
        str(work / "audit.vkey"),
        "--since",
        str(work / "checkpoint-1.txt"),
    )
    say.run(
        "auditor",
        au,
        "audit",
        "verify",
        "--key",
        str(work / "audit.vkey"),
        "--file",
        str(work / "audit-export.jsonl"),
    )
    say.step("The evaluator's accesses, as the auditor sees them")
    say.run("auditor", au, "audit", "tail", "-n", "30", "--org", ORGS["evaluator"][0])
    say.step("Done")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    size = int(args[0]) << 20 if args else 256 << 20
    if shutil.which("age") is None:
        print("demo: the age program is needed (Debian package age)", file=sys.stderr)
        return 1
    with LocalGateway() as gw:
        work = gw.root / "work"
        work.mkdir()
        try:
            story(gw, work, size)
        except RuntimeError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            print(
                f"demo: server log:\n{(gw.root / 'server.log').read_text()[-3000:]}",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
