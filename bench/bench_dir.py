"""Push and pull a model directory through a local ``gateway serve``, against tar, age and cp.

The directory: 8 shards of equal size (``--size-mib`` in all), an index, a config and a
tokenizer folder. Baselines on the same machine and disk, same tree:
  push: ``tar -c -C DIR . | age -e -r RECIPIENT -o D.age`` then ``cp D.age STORE/``
  pull: ``cp STORE/D.age D2.age`` then ``age -d -i IDENTITY D2.age | tar -x -C OUT``
Targets: the gateway's push and pull each faster than its baseline; the client's and
the server's peak RSS each under 200 MiB (client from ``wait4``, server the largest
``VmHWM`` in its process group).

    .venv/bin/python bench/bench_dir.py [--size-mib 2048] [--runs 1]

Prints a markdown table. The page cache is warm for every contender alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
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

from tests.harness import LocalGateway, gateway_command, write_weights

SHARDS = 8


def write_model(root: Path, size: int) -> None:
    root.mkdir()
    names = [f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
    for i, name in enumerate(names):
        write_weights(root / name, size // SHARDS, seed=f"shard-{i}".encode())
    index = {"weight_map": {f"layers.{i}": n for i, n in enumerate(names)}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text('{"model": {}}')


def same(a: Path, b: Path) -> None:
    if subprocess.run(["diff", "-r", "-q", str(a), str(b)], check=False).returncode != 0:
        raise SystemExit(f"{b} differs from {a}")


def baselines(work: Path, model: Path, store: Path) -> dict[str, float]:
    identity, recipient = age_keys(work)
    enc, stored, fetched, out = work / "d.age", store / "d.age", work / "d2.age", work / "d2"
    q = shlex.quote
    t_enc, _ = timed(
        [
            "bash",
            "-c",
            f"set -o pipefail; tar -c -C {q(str(model))} . | "
            f"age -e -r {q(recipient)} -o {q(str(enc))}",
        ]
    )
    t_cp, _ = timed(["cp", str(enc), str(stored)])
    os.sync()
    t_cp2, _ = timed(["cp", str(stored), str(fetched)])
    out.mkdir()
    t_dec, _ = timed(
        [
            "bash",
            "-c",
            f"set -o pipefail; age -d -i {q(str(identity))} {q(str(fetched))} | "
            f"tar -x -C {q(str(out))}",
        ]
    )
    same(model, out)
    for p in (enc, stored, fetched):
        p.unlink()
    shutil.rmtree(out)
    os.sync()
    return {"push": t_enc + t_cp, "pull": t_cp2 + t_dec}


def through_gateway(gw: LocalGateway, work: Path, model: Path) -> dict[str, float]:
    key, ident = gateway_keys(gw, work)
    push = [*gateway_command(), "push", str(model), *share_args(key)]
    t_push, rss_push = timed(push, env=gw.env("lab"))
    artifact = grant_latest(gw)
    out = work / "pulled"
    os.sync()
    t_pull, rss_pull = timed(
        [*gateway_command(), "pull", artifact, "-o", str(out), "--quiet", "-i", str(ident)],
        env=gw.env("evaluator"),
    )
    same(model, out)
    shutil.rmtree(out)
    os.sync()
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
        work, store = gw.root / "bench", gw.root / "store"
        work.mkdir()
        store.mkdir()
        model = work / "model"
        write_model(model, size)
        rows: list[Row] = []
        for _ in range(args.runs):
            base = baselines(work, model, store)
            ours = through_gateway(gw, work, model)
            assert gw.process is not None
            rows.append((base, ours, server_peak_rss(gw.process.pid)))
    heads = ("push DIR: gateway", "tar -c \\| age -e + cp", "pull -o DIR: gateway")
    report(
        rows, size, f"{args.size_mib} MiB in {SHARDS} shards", (*heads, "cp + age -d \\| tar -x")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
