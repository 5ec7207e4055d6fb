"""Upload throughput and server memory: an age file in 64 MiB parts through `gateway serve`.

    .venv/bin/python bench/bench_upload.py [--sizes-mib 512,2048] [--backends local,s3]

For each backend and size: generate an age file (the `age` program, from /dev/zero:
its ciphertext is incompressible), start `gateway serve` (s3: against `moto_server`),
upload it part by part over HTTP streaming each part from the file, complete it, and
report throughput and the server processes' peak RSS (VmHWM). Peak RSS must stay
flat as the size grows. Against moto, moto itself is the bottleneck and holds objects
in memory: its own RSS is reported apart and not counted as the gateway's.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from nacl.signing import SigningKey

from gateway.client import possession

BIN = Path(sys.executable).parent
MIB = 1 << 20
PART = 64 * MIB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_hwm_kib(pid: int) -> int:
    """Largest VmHWM among a process and its children (gunicorn master and workers)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    best = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
        except FileNotFoundError:
            pass
    return best


class FileSlice:
    """A part streamed from a file, 1 MiB at a time, never whole in memory."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self.f = open(path, "rb")  # noqa: SIM115
        self.f.seek(offset)
        self.left = length

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left, MIB)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def part_digests(path: Path, size: int) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        while chunk := f.read(PART):
            out.append(hashlib.sha256(chunk).digest())
    return out


def run_one(backend: str, size_mib: int, work: Path, args_jobs: int = 2) -> dict[str, float]:
    port = free_port()
    root = work / f"{backend}-{size_mib}"
    root.mkdir()
    env = {
        **os.environ,
        "GATEWAY_SERVER_PORT": str(port),
        "GATEWAY_DATABASE_URL": f"sqlite:///{root}/gw.db",
        "GATEWAY_STORAGE_ROOT": str(root / "objects"),
        "GATEWAY_KEYS_DIR": str(root / "keys"),
        "GATEWAY_AUDIT_ARCHIVE_DIR": str(root / "audit"),
        "GATEWAY_SERVER_THREADS": "4",
        "GATEWAY_SWEEPER_INTERVAL_SECONDS": "0",
        "GATEWAY_SERVER_LOG_LEVEL": "warning",
    }
    moto = None
    if backend == "s3":
        mport = free_port()
        moto = subprocess.Popen(
            [str(BIN / "moto_server"), "-p", str(mport)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2)
        env.update(
            {
                "GATEWAY_STORAGE_BACKEND": "s3",
                "GATEWAY_STORAGE_ENDPOINT_URL": f"http://127.0.0.1:{mport}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "GATEWAY_STORAGE_BUCKET": f"bench-{size_mib}",
                "GATEWAY_STORAGE_AUDIT_BUCKET": f"bench-audit-{size_mib}",
                "GATEWAY_STORAGE_ALLOW_INSECURE_ENDPOINT": "true",  # moto speaks http
            }
        )

    def gw(*a):
        return subprocess.run(
            [str(BIN / "gateway"), *a], env=env, check=True, capture_output=True, text=True
        )

    gw("init")
    if backend == "s3":
        # moto treats the provisioned policy's conditional Deny statements as absolute
        # (it does not evaluate aws:SecureTransport or aws:PrincipalArn): drop the policy
        # so that the benchmark can talk to it. Real S3 evaluates the conditions.
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=env["GATEWAY_STORAGE_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )  # noqa: S106
        client.delete_bucket_policy(Bucket=env["GATEWAY_STORAGE_BUCKET"])
    gw("admin", "org", "create", "lab", "--kind", "lab")
    gw("admin", "org", "create", "agency", "--kind", "agency")
    token = gw(
        "admin", "token", "create", "--org", "lab", "--role", "lab", "--name", "bench"
    ).stdout.strip()
    server = subprocess.Popen(
        [str(BIN / "gateway"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/healthz", timeout=10).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        key = SigningKey.generate()
        me = s.get(url + "/v1/me").json()
        s.put(url + "/v1/me/signing-key", json=possession.prove(key, me["org"], me["name"]))
        up = s.post(
            url + "/v1/uploads", json={"name": "bench", "kind": "weights", "share_with": ["agency"]}
        ).json()
        assert up["part_size"] == PART, up
        cipher = root / "weights.age"
        with open(cipher, "wb") as out:
            dd = subprocess.Popen(
                ["head", "-c", str(size_mib * MIB), "/dev/zero"], stdout=subprocess.PIPE
            )
            subprocess.run(["age", "-r", up["recipient"]], stdin=dd.stdout, stdout=out, check=True)
            dd.wait()
        total = cipher.stat().st_size
        digests = part_digests(cipher, total)
        subprocess.run(
            ["cat", str(cipher)], stdout=subprocess.DEVNULL, check=True
        )  # into page cache
        t0 = time.perf_counter()

        # Two parts in flight, as `gateway push` sends them (one is fsynced while the next
        # arrives); http.client with 1 MiB sends, where requests would send 8 KiB at a time.
        def send(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, blocksize=MIB, timeout=600)
            length = min(PART, total - i * PART)
            conn.request(
                "PUT",
                f"/v1/uploads/{up['id']}/parts/{i + 1}",
                body=FileSlice(cipher, i * PART, length),
                headers={
                    "X-Content-SHA256": digests[i].hex(),
                    "Content-Length": str(length),
                    "Authorization": f"Bearer {token}",
                },
            )
            answer = conn.getresponse()
            answer.read()
            conn.close()
            if answer.status != 200:
                raise RuntimeError(f"part {i + 1}: HTTP {answer.status}")

        with ThreadPoolExecutor(max_workers=args_jobs) as pool:
            list(pool.map(send, range(len(digests))))
        elapsed = time.perf_counter() - t0
        m = {
            "version": 1,
            "upload": up["id"],
            "name": "bench",
            "kind": "weights",
            "ciphertext": {
                "size": total,
                "part_size": PART,
                "parts_sha256": hashlib.sha256(b"".join(digests)).hexdigest(),
            },
            "plaintext": {"size": size_mib * MIB, "sha256": "0" * 64},
        }
        canon = __import__("json").dumps(m, sort_keys=True, separators=(",", ":")).encode()
        r = s.post(
            f"{url}/v1/uploads/{up['id']}/complete",
            json={"manifest": m, "signature": base64.b64encode(key.sign(canon).signature).decode()},
        )
        r.raise_for_status()
        result = {
            "gbps": total / elapsed / 1e9,
            "server_rss_mib": tree_hwm_kib(server.pid) / 1024,
            "moto_rss_mib": tree_hwm_kib(moto.pid) / 1024 if moto else 0.0,
            "seconds": elapsed,
        }
        cipher.unlink()
        return result
    finally:
        server.terminate()
        server.wait()
        if moto:
            moto.terminate()
            moto.wait()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes-mib", default="512,2048")
    ap.add_argument("--backends", default="local,s3")
    ap.add_argument("--jobs", type=int, default=2, help="parts in flight (gateway push sends 2)")
    ap.add_argument(
        "--s3-max-mib",
        type=int,
        default=1024,
        help="largest size sent to moto (it holds objects in memory)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    print("| backend | size | throughput | gateway peak RSS | moto peak RSS |")
    print("|---|---|---|---|---|")
    try:
        for backend in args.backends.split(","):
            for size in (int(x) for x in args.sizes_mib.split(",")):
                if backend == "s3" and size > args.s3_max_mib:
                    continue
                r = run_one(backend, size, work, args.jobs)
                print(
                    f"| {backend} | {size} MiB | {r['gbps']:.2f} GB/s | {r['server_rss_mib']:.0f} MiB | "
                    f"{r['moto_rss_mib']:.0f} MiB |",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
