"""Object-store throughput and memory: one large part in, a full and a ranged read out.

    .venv/bin/python bench/bench_storage.py [--sizes-mib 64,512] [--backends local,s3]

For each backend and part size: stream one part from a generated, incompressible
source into the store (``put_part``, SHA-256 verified), complete the upload, read the
object back in full and read a 1 MiB range from its middle. ``source+sha`` is the
baseline: generating and hashing the bytes without a store. Reports MiB/s for each step
and the peak of Python heap allocations during the step (``tracemalloc``), which must
stay flat as the size grows: nothing holds a whole part. ``s3`` runs against a
``moto_server`` on 127.0.0.1 (moto keeps objects in its own memory and is the
bottleneck; its RSS is not the gateway's and is not counted).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.storage import ObjectStore, StorageSettings, make_store  # noqa: E402
from gateway.storage.provision import provision  # noqa: E402

MIB = 1 << 20
KEY = "artifacts/bench.age"


class Source:
    """``size`` pseudo-random bytes made on the fly from a 1 MiB block and a counter."""

    def __init__(self, size: int, block: bytes) -> None:
        self.size, self.block, self.pos = size, block, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            index, within = divmod(self.pos, MIB)
            take = min(n - len(out), MIB - within)
            block = index.to_bytes(8, "little") + self.block[8:]
            out += block[within : within + take]
            self.pos += take
        return bytes(out)


def digest_of(size: int, block: bytes) -> str:
    h, src = hashlib.sha256(), Source(size, block)
    for chunk in iter(lambda: src.read(MIB), b""):
        h.update(chunk)
    return h.hexdigest()


def measured(step: Callable[[], Any]) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    step()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak


def run(store: ObjectStore, size: int) -> dict[str, tuple[float, int]]:
    block = os.urandom(MIB)
    found: list[str] = []
    baseline = measured(lambda: found.append(digest_of(size, block)))
    digest = found[0]
    handle = store.begin_upload(KEY)
    parts = []
    results = {
        "source+sha": baseline,
        "put_part": measured(
            lambda: parts.append(
                store.put_part(KEY, handle, 1, 0, size, Source(size, block), digest)
            )
        ),
    }  # type: ignore[arg-type]
    results["complete"] = measured(lambda: store.complete_upload(KEY, handle, parts, size))
    results["read all"] = measured(lambda: sum(len(c) for c in store.open_read(KEY)))
    middle = size // 2
    results["read 1 MiB"] = measured(lambda: b"".join(store.open_read(KEY, middle, middle + MIB)))
    store.delete(KEY)
    return results


def moto_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):  # noqa: S310 - local
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("bench: moto_server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", default="64,512")
    parser.add_argument("--backends", default="local,s3")
    args = parser.parse_args()
    sizes = [int(s) * MIB for s in args.sizes_mib.split(",")]
    print(f"{'backend':8} {'size':>9} {'step':12} {'MiB/s':>9} {'peak heap':>10}")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            proc = None
            if backend == "s3":
                os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
                os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
                proc, url = moto_server()
                settings = StorageSettings(
                    backend="s3",
                    bucket="bench-artifacts",
                    audit_bucket="bench-audit",
                    endpoint_url=url,
                    allow_insecure_endpoint=True,  # moto speaks http
                    gateway_principal_arn="arn:aws:iam::1:role/bench",
                )
            else:
                settings = StorageSettings(
                    backend="local", root=Path(tmp) / "store", audit_dir=Path(tmp) / "audit"
                )
            try:
                provision(settings)
                if backend == "s3":  # moto treats the policy's conditional denies as absolute
                    make_store(settings).client.delete_bucket_policy(Bucket=settings.bucket)  # type: ignore[attr-defined]
                store = make_store(settings)
                for size in sizes:
                    for step, (seconds, peak) in run(store, size).items():
                        amount = MIB if step == "read 1 MiB" else size
                        rate = "-" if step == "complete" else f"{amount / MIB / seconds:9.1f}"
                        print(
                            f"{backend:8} {size // MIB:>5} MiB {step:12} {rate:>9} {peak / MIB:>7.1f} MiB"
                        )
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait()


if __name__ == "__main__":
    main()
