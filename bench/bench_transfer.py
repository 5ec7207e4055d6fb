"""Push and pull a large file through a local ``gateway serve``, against ``age`` and ``cp``.

Baselines on the same machine and disk, same file:
  push: ``age -e -r RECIPIENT -o F.age F`` then ``cp F.age STORE/``
  pull: ``cp STORE/F.age F2.age`` then ``age -d -i IDENTITY -o F2 F2.age``
Targets: the gateway's push and pull each faster than its baseline; the client's and
the server's peak RSS each under 200 MiB. Peak RSS: the client from ``wait4``, the
server as the largest ``VmHWM`` among its processes (gunicorn master and workers).

    .venv/bin/python bench/bench_transfer.py [--size-mib 2048] [--runs 1]

Prints a markdown table. The page cache is warm for every contender alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from common import (
    MIB,
    Row,
    age_keys,
    gateway_keys,
    grant_latest,
    report,
    server_peak_rss,
    share_args,
    timed,
)

from tests.harness import LocalGateway, gateway_command, sha256_file, write_weights

__all__ = ["server_peak_rss", "timed"]  # older scripts import them from here


def sync_drop(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.sync()


def baselines(work: Path, plain: Path, store: Path) -> dict[str, float]:
    identity, recipient = age_keys(work)
    enc, stored, fetched, out = work / "f.age", store / "f.age", work / "f2.age", work / "f2.bin"
    t_enc, _ = timed(["age", "-e", "-r", recipient, "-o", str(enc), str(plain)])
    t_cp, _ = timed(["cp", str(enc), str(stored)])
    os.sync()
    t_cp2, _ = timed(["cp", str(stored), str(fetched)])
    t_dec, _ = timed(["age", "-d", "-i", str(identity), "-o", str(out), str(fetched)])
    for p in (enc, stored, fetched, out):
        sync_drop(p)
    return {"push": t_enc + t_cp, "pull": t_cp2 + t_dec}


def through_gateway(gw: LocalGateway, work: Path, plain: Path) -> dict[str, float]:
    key, ident = gateway_keys(gw, work)
    push = [*gateway_command(), "push", str(plain), "--name", plain.name, *share_args(key)]
    t_push, rss_push = timed(push, env=gw.env("lab"))
    artifact = grant_latest(gw)
    out = work / "pulled.bin"
    os.sync()
    t_pull, rss_pull = timed(
        [*gateway_command(), "pull", artifact, "-o", str(out), "--quiet", "--identity", str(ident)],
        env=gw.env("evaluator"),
    )
    if sha256_file(out) != sha256_file(plain):
        raise SystemExit("the pulled file differs")
    sync_drop(out)
    return {"push": t_push, "pull": t_pull, "client_rss": max(rss_push, rss_pull)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if not shutil.which("age"):
        print("bench: the age program is needed", file=sys.stderr)
        return 1
    size = args.size_mib * MIB
    with LocalGateway() as gw:
        work = gw.root / "bench"
        store = gw.root / "store"
        work.mkdir()
        store.mkdir()
        plain = work / "weights.bin"
        write_weights(plain, size, seed=b"bench")
        rows: list[Row] = []
        for _ in range(args.runs):
            base = baselines(work, plain, store)
            ours = through_gateway(gw, work, plain)
            assert gw.process is not None
            rows.append((base, ours, server_peak_rss(gw.process.pid)))
    heads = ("push: gateway", "push: age -e + cp", "pull: gateway", "pull: cp + age -d")
    report(rows, size, f"{args.size_mib} MiB file", heads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
