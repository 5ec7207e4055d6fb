"""What the CLI transfer benchmarks share: timing, peak RSS, keys, grants and the result table.

``bench_transfer.py`` (one file) and ``bench_dir.py`` (a model directory) each push and
pull through a local ``gateway serve`` against a baseline of standard tools; the setup
and the reporting are the same and live here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

# The harness is the tests' (tests/harness.py), not the package's: bench runs from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import ORGS, LocalGateway, cli  # noqa: E402 - after the checkout is on the path

MIB = 1 << 20
Row = tuple[dict[str, float], dict[str, float], int]


class Measured(NamedTuple):
    seconds: float
    rss: int
    """Peak RSS in bytes."""
    cpu: float
    """User and system CPU seconds of the process and every descendant it waited for."""


def measured(argv: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``argv``; its wall time, peak RSS and CPU time."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed: {err}")
    return Measured(elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ``argv``; (seconds, peak RSS in bytes)."""
    run = measured(argv, env)
    return run.seconds, run.rss


def _group(leader: int) -> Iterator[Path]:
    """The /proc entries of the processes in ``leader``'s process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == leader:
                yield entry
        except (OSError, ProcessLookupError):
            continue


def server_cpu(leader: int) -> float:
    """User and system CPU seconds used so far by the server's process group."""
    ticks = 0
    for entry in _group(leader):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_peak_rss(leader: int) -> int:
    """The largest peak RSS (VmHWM) among the processes of the server's process group."""
    peak = 0
    for entry in _group(leader):
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            continue
    return peak


def age_keys(work: Path) -> tuple[Path, str]:
    """The baseline's age identity file (made once) and its recipient."""
    identity = work / "base.agekey"
    if not identity.exists():
        subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return identity, recipient


def gateway_keys(gw: LocalGateway, work: Path) -> tuple[Path, Path]:
    """The lab's signing key and the evaluator's age identity (made once, registered)."""
    key, ident = work / "lab.key", work / "eve.agekey"
    if not key.exists():
        cli(gw.env("lab"), "keygen", "--type", "signing", "-o", str(key))
        cli(gw.env("evaluator"), "keygen", "--type", "age", "-o", str(ident))
    return key, ident


def share_args(key: Path) -> list[str]:
    """``push``'s sharing and signing options."""
    return ["--quiet", "--share-with", ORGS["evaluator"][0], "--signing-key", str(key)]


def grant_latest(gw: LocalGateway) -> str:
    """The artifact pushed last, requested by the evaluator and approved by the lab."""
    listed = json.loads(cli(gw.env("lab"), "artifacts", "--json").stdout)
    artifact = str(max(listed, key=lambda a: str(a.get("submitted_at")))["id"])
    request = json.loads(
        cli(gw.env("evaluator"), "request", artifact, "--justification", "bench", "--json").stdout
    )
    cli(gw.env("lab"), "approve", request["id"])
    return artifact


def report(rows: list[Row], size: int, title: str, heads: tuple[str, str, str, str]) -> None:
    """The markdown table of the runs and whether the targets were met."""
    gib = size / (1 << 30)
    print(f"\n2-core machine, {title}, warm page cache, {len(rows)} run(s)\n")
    print(f"| run | {' | '.join(heads)} | client peak RSS | server peak RSS |")
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
