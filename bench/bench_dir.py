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
    measured,
    report,
    server_cpu,
    server_peak_rss,
    share_args,
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
    enc_run = measured(
        [
            "bash",
            "-c",
            f"set -o pipefail; tar -c -C {q(str(model))} . | "
            f"age -e -r {q(recipient)} -o {q(str(enc))}",
        ]
    )
    cp_run = measured(["cp", str(enc), str(stored)])
    os.sync()
    cp2_run = measured(["cp", str(stored), str(fetched)])
    out.mkdir()
    dec_run = measured(
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
    return {
        "push": enc_run.seconds + cp_run.seconds,
        "pull": cp2_run.seconds + dec_run.seconds,
        "push_cpu": enc_run.cpu + cp_run.cpu,
        "pull_cpu": cp2_run.cpu + dec_run.cpu,
    }


def through_gateway(gw: LocalGateway, work: Path, model: Path) -> dict[str, float]:
    key, ident = gateway_keys(gw, work)
    push = [*gateway_command(), "push", str(model), *share_args(key)]
    assert gw.process is not None
    leader = gw.process.pid
    before = server_cpu(leader)
    push_run = measured(push, env=gw.env("lab"))
    push_server = server_cpu(leader) - before
    artifact = grant_latest(gw)
    out = work / "pulled"
    os.sync()
    before = server_cpu(leader)
    pull_run = measured(
        [*gateway_command(), "pull", artifact, "-o", str(out), "--quiet", "-i", str(ident)],
        env=gw.env("evaluator"),
    )
    pull_server = server_cpu(leader) - before
    same(model, out)
    shutil.rmtree(out)
    os.sync()
    return {
        "push": push_run.seconds,
        "pull": pull_run.seconds,
        "client_rss": max(push_run.rss, pull_run.rss),
        "push_cpu": push_run.cpu,
        "push_server_cpu": push_server,
        "pull_cpu": pull_run.cpu,
        "pull_server_cpu": pull_server,
    }


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
    cpu_report(rows)
    return 0


def cpu_report(rows: list[Row]) -> None:
    """The CPU each contender used (user + system; the gateway's: client + server): on two
    cores, a contender cannot finish in less than half its CPU time."""
    print("\n| run | push CPU: client + server | baseline | pull CPU: client + server | baseline |")
    print("|---|---|---|---|---|")
    for i, (base, ours, _) in enumerate(rows, 1):
        print(
            f"| {i} | {ours['push_cpu']:.2f} + {ours['push_server_cpu']:.2f} s "
            f"| {base['push_cpu']:.2f} s "
            f"| {ours['pull_cpu']:.2f} + {ours['pull_server_cpu']:.2f} s "
            f"| {base['pull_cpu']:.2f} s |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
