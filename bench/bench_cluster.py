"""Logged accesses per second through one and three instances, on SQLite and on PostgreSQL.

    .venv/bin/python bench/bench_cluster.py                 # 10 s per cell
    .venv/bin/python bench/bench_cluster.py --seconds 5     # quicker

Each cell starts its instances as the production profile runs them (``config/production.toml``,
one worker with 16 threads each; tests/e2e/cluster.py), on a fresh database (SQLite file or a
PostgreSQL database of a throwaway cluster) and one moto server for S3, uploads one
artifact, then ``--clients`` threads send requests round robin over the instances for
``--seconds``. The logged route is ``GET /v1/artifacts/{id}`` (an ``artifact.read`` entry per
answer, durable before the answer); the same load on ``GET /v1/artifacts?limit=1`` (the same
token check, policy and row read, no entry) measures the route without the log's work, so
``1 - logged/unlogged`` is what logging costs. The clients run on the same two cores as the
servers. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import helpers, pg  # noqa: E402 - after the path
from tests.e2e import cluster_load as load  # noqa: E402
from tests.e2e.cluster import UNLIMITED, Cluster, cluster_env, start_moto, stop_process  # noqa: E402

SETTINGS = {**UNLIMITED, "GATEWAY_SERVER_TRUSTED_PROXIES": ""}


def _artifact(cluster: Cluster) -> str:
    """One uploaded artifact, shared with agency-a; its id."""
    s, key = load.session(cluster.tokens["lab"]), SigningKey.generate()
    url = cluster.urls[0]
    me = s.get(url + "/v1/me", timeout=30).json()
    r = s.put(url + "/v1/me/signing-key", json=helpers.key_registration(key, me), timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"signing key not registered: {r.status_code} {r.text[:200]}")
    load.SIMULTANEOUS_COMPLETIONS = False
    rec, outcomes = load.Recorder(), load.Outcomes()
    load._upload([url, url], s, key, "agency-a", rec, outcomes, random.Random(1), "bench")
    items = s.get(url + "/v1/artifacts?limit=1", timeout=30).json()["items"]
    return str(items[0]["id"])


def rate(urls: Sequence[str], token: str, path: str, clients: int, seconds: float) -> float:
    """Answers 200 per second of ``clients`` threads sending GET ``path`` round robin."""
    counts = [0] * clients
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(n: int) -> None:
        s = load.session(token)
        start.wait()
        i = n
        while time.monotonic() < deadline[0]:
            r = s.get(urls[i % len(urls)] + path, timeout=60)
            i += 1
            if r.status_code == 200:
                counts[n] += 1
            elif len(errors) < 5:
                errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + seconds
    begun = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{path}: {errors}")
    return sum(counts) / (time.monotonic() - begun)


def _profile(
    cluster: Cluster, args: argparse.Namespace, name: str
) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of the first instance (its worker too) for the logged run, if asked.

    Writes collapsed stacks (``--format raw``) to ``--profile``/``name``.txt; ``--nonblocking``
    so the instance is sampled without being stopped.
    """
    if args.profile is None:
        return None
    process = cluster.instances[0].process
    assert process is not None
    out = Path(args.profile) / f"{name}.txt"
    spy = shutil.which("py-spy", path=_bin_path()) or "py-spy"
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(process.pid),
            "--subprocesses",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "200",
            "--duration",
            str(int(args.seconds)),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cell(
    root: Path, database_url: str, endpoint: str, instances: int, args: argparse.Namespace
) -> list[tuple[int, float, float]]:
    """(clients, logged/s, unlogged/s) for each client count on ``instances`` instances."""
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    env = cluster_env(
        root, database_url=database_url, endpoint=endpoint, bucket=bucket, settings=SETTINGS
    )
    cluster = Cluster(root, env, bucket, endpoint)
    try:
        cluster.init()
        cluster.start(instances)
        art, token = _artifact(cluster), cluster.tokens["eval"]
        rate(cluster.urls, token, f"/v1/artifacts/{art}", 4, 1)  # warm-up
        out = []
        for clients in args.clients:
            spy = _profile(cluster, args, f"{root.name}-{clients}")
            logged = rate(cluster.urls, token, f"/v1/artifacts/{art}", clients, args.seconds)
            if spy is not None:
                spy.wait(timeout=args.seconds + 60)
            bare = rate(cluster.urls, token, "/v1/artifacts?limit=1", clients, args.seconds)
            out.append((clients, logged, bare))
        return out
    finally:
        cluster.stop()


def _bin_path() -> str:
    """Where py-spy is looked for: beside this Python, then the PATH."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--databases", nargs="+", default=["SQLite", "PostgreSQL"])
    parser.add_argument("--profile", help="a directory for py-spy profiles of the logged runs")
    args = parser.parse_args()
    if args.profile is not None and shutil.which("py-spy", path=_bin_path()) is None:
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-cluster-") as tmp:
        base = Path(tmp)
        moto, endpoint = start_moto(base / "moto.log")
        database = pg.start_cluster()
        try:
            for db in args.databases:
                for instances in args.instances:
                    root = base / f"{db}-{instances}"
                    root.mkdir()
                    if db == "SQLite":
                        url = f"sqlite:///{root / 'gateway.db'}"
                    else:
                        url = database.create_database(f"bench_{instances}")
                    for clients, logged, bare in cell(root, url, endpoint, instances, args):
                        rows.append((db, instances, clients, logged, bare))
                        print(f"{db} {instances} {clients}: {logged:.0f} {bare:.0f}", flush=True)  # noqa: T201
        finally:
            database.stop()
            stop_process(moto)
    print()  # noqa: T201
    print(
        "| database | instances | clients | logged accesses/s | same route unlogged/s | logging costs |"
    )  # noqa: T201, E501
    print("|---|---:|---:|---:|---:|---:|")  # noqa: T201
    for db, instances, clients, logged, bare in rows:
        cost = 1 - logged / bare if bare else float("nan")
        print(f"| {db} | {instances} | {clients} | {logged:.0f} | {bare:.0f} | {cost:.0%} |")  # noqa: T201


if __name__ == "__main__":
    main()
