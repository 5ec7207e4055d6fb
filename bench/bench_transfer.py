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
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# The harness is the tests' (tests/harness.py), not the package's: bench runs from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import (  # noqa: E402 - after the checkout is on the path
    ORGS,
    LocalGateway,
    cli,
    gateway_command,
    sha256_file,
    write_weights,
)

MIB = 1 << 20


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ``argv``; (seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed: {err}")
    return elapsed, usage.ru_maxrss * 1024


def server_peak_rss(leader: int) -> int:
    """The largest peak RSS (VmHWM) among the processes of the server's process group."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != leader:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ProcessLookupError):
            continue
    return peak


def sync_drop(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.sync()


def baselines(work: Path, plain: Path, store: Path) -> dict[str, float]:
    identity = work / "base.agekey"
    if not identity.exists():
        subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
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
    lab, ev = gw.env("lab"), gw.env("evaluator")
    key, ident = work / "lab.key", work / "eve.agekey"
    if not key.exists():
        cli(lab, "keygen", "--type", "signing", "-o", str(key))
        cli(ev, "keygen", "--type", "age", "-o", str(ident))
    t_push, rss_push = timed(
        [
            *gateway_command(),
            "push",
            str(plain),
            "--name",
            plain.name,
            "--quiet",
            "--share-with",
            ORGS["evaluator"][0],
            "--signing-key",
            str(key),
        ],
        env=lab,
    )
    listed = json.loads(cli(lab, "artifacts", "--json").stdout)
    artifact = max(listed, key=lambda a: str(a.get("submitted_at")))["id"]
    request = json.loads(cli(ev, "request", artifact, "--justification", "bench", "--json").stdout)
    cli(lab, "approve", request["id"])
    out = work / "pulled.bin"
    os.sync()
    t_pull, rss_pull = timed(
        [*gateway_command(), "pull", artifact, "-o", str(out), "--quiet", "--identity", str(ident)],
        env=ev,
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
        rows = []
        for _ in range(args.runs):
            base = baselines(work, plain, store)
            ours = through_gateway(gw, work, plain)
            assert gw.process is not None
            rows.append((base, ours, server_peak_rss(gw.process.pid)))
    gib = size / (1 << 30)
    print(f"\n2-core machine, {args.size_mib} MiB file, warm page cache, {args.runs} run(s)\n")
    print(
        "| run | push: gateway | push: age -e + cp | pull: gateway | pull: cp + age -d | client peak RSS | server peak RSS |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, (base, ours, srv) in enumerate(rows, 1):
        print(
            f"| {i} | {ours['push']:.2f} s ({gib / ours['push']:.2f} GiB/s) | {base['push']:.2f} s "
            f"| {ours['pull']:.2f} s ({gib / ours['pull']:.2f} GiB/s) | {base['pull']:.2f} s "
            f"| {ours['client_rss'] / MIB:.0f} MiB | {srv / MIB:.0f} MiB |"
        )
    ok = all(
        o["push"] < b["push"]
        and o["pull"] < b["pull"]
        and o["client_rss"] < 200 * MIB
        and s < 200 * MIB
        for b, o, s in rows
    )
    print(f"\ntargets (faster than baseline, both RSS < 200 MiB): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
