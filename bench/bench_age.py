"""Throughput and memory of gateway.age against the `age` program and pyrage.

Generates a random file (1 GiB by default) in a temporary directory, warms it into the
page cache, then times, in the same run, encryption of it and decryption of one age
file (made by `age`) to /dev/null with: this package, the `age` program, and pyrage.
Each measurement runs in its own process, so its peak RSS (from wait4) is its own.
Python tools are timed around the call itself (interpreter start-up excluded); `age`
is timed as a whole process (its start-up is a few milliseconds). Prints a markdown
table: medians of --runs runs, GB/s (1e9 bytes/s), ratio to `age`, peak RSS; then the
ratio of gateway.age to `age` within each round (the tools run back to back in a round),
as min / median / max over the rounds.

With ``--compare DIR`` (another checkout of this repository), that checkout's gateway.age
runs in every round too, as ``gateway.age@DIR``, and the report adds its ratio to this
one's within each round: a before/after comparison less exposed to the machine's drift
than two separate runs.

    .venv/bin/python bench/bench_age.py --size 256M --runs 3
    .venv/bin/python bench/bench_age.py --size 1G --runs 5 --compare /tmp/gateway-before
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CPU = """
import resource
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
"""

OURS = (
    CPU
    + """
import os, sys, time
import gateway
from gateway import age
mode, path, key = sys.argv[1:4]
assert os.path.realpath(gateway.__file__).startswith(os.path.realpath(os.getcwd()))
with open(key) as fh:
    ident = age.parse_identities(fh.read())[0]
with open(path, "rb", buffering=0) as src, open("/dev/null", "wb", buffering=0) as dst:
    c, t = cpu(), time.perf_counter()
    if mode == "encrypt":
        age.encrypt(src, dst, [ident.to_recipient()])
    else:
        age.decrypt(src, dst, [ident])
    print(time.perf_counter() - t, cpu() - c)
"""
)

PYRAGE = (
    CPU
    + """
import sys, time
import pyrage
mode, path, key = sys.argv[1:4]
with open(key) as fh:
    secret = [ln for ln in fh.read().splitlines() if ln.startswith("AGE-SECRET-KEY-")][0]
    ident = pyrage.x25519.Identity.from_str(secret)
with open(path, "rb") as src, open("/dev/null", "wb") as dst:
    c, t = cpu(), time.perf_counter()
    if mode == "encrypt":
        pyrage.encrypt_io(src, dst, [ident.to_public()])
    else:
        pyrage.decrypt_io(src, dst, [ident])
    print(time.perf_counter() - t, cpu() - c)
"""
)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def run(cmd: list[str], timed_inside: bool, cwd: Path = ROOT) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in bytes) of one process, run in ``cwd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=cwd)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    if timed_inside:
        wall_in, cpu_in = (float(x) for x in out.split())
        return wall_in, cpu_in, usage.ru_maxrss * 1024
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(1 << 20)
        while fh.readinto(buf):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="1G", help="plaintext size, e.g. 256M, 1G (default 1G)")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is kept")
    ap.add_argument("--dir", default=None, help="where to put the temporary files")
    ap.add_argument(
        "--compare", type=Path, default=None, help="another checkout whose gateway.age to time too"
    )
    args = ap.parse_args()
    if args.compare is not None and not (args.compare / "gateway" / "age").is_dir():
        raise SystemExit(f"{args.compare}: not a checkout of this repository")
    size = parse_size(args.size)
    age_bin = shutil.which("age")
    if not age_bin:
        raise SystemExit("the age program is not on PATH")
    py = sys.executable
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        plain, cipher, key = d / "plain", d / "plain.age", d / "key.txt"
        with open(plain, "wb") as fh:
            for left in range(size, 0, -(1 << 24)):
                fh.write(os.urandom(min(left, 1 << 24)))
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        recipient = subprocess.run(
            ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run([age_bin, "-e", "-r", recipient, "-o", str(cipher), str(plain)], check=True)
        os.sync()  # no write-back of the fresh files while measuring
        tools = _tools(py, age_bin, recipient, key, args.compare)
        results: dict[tuple[str, str], tuple[float, float, int]] = {}
        paired: dict[str, dict[str, list[float]]] = {t: {} for t in tools if t != "gateway.age"}
        paired.pop("pyrage")
        for mode, path in (("encrypt", plain), ("decrypt", cipher)):
            samples: dict[str, list[tuple[float, float, int]]] = {t: [] for t in tools}
            order = list(tools)
            for _ in range(args.runs):
                for tool in order:  # interleaved and rotated, so drift hits every tool alike
                    warm(path)
                    samples[tool].append(run(*tools[tool](mode, path)))
                order = order[1:] + order[:1]
            # each round ran every tool back to back: their ratio is less exposed to the machine's drift
            for other, ratios in paired.items():
                ratios[mode] = _ratios(samples[other], samples["gateway.age"])
            for tool, got in samples.items():
                results[(tool, mode)] = (
                    statistics.median(s for s, _, _ in got),
                    statistics.median(c for _, c, _ in got),
                    max(r for _, _, r in got),
                )
    report(results, list(tools), paired, size, args.runs)


Command = tuple[list[str], bool, Path]


def _tools(
    py: str, age_bin: str, recipient: str, key: Path, compare: Path | None
) -> dict[str, Callable[[str, Path], Command]]:
    """Each tool: (mode, input path) -> (command, timed inside, working directory)."""
    tools: dict[str, Callable[[str, Path], Command]] = {
        "gateway.age": lambda m, p: ([py, "-c", OURS, m, str(p), str(key)], True, ROOT),
        "age": lambda m, p: (
            [age_bin, "-e", "-r", recipient, "-o", "/dev/null", str(p)]
            if m == "encrypt"
            else [age_bin, "-d", "-i", str(key), "-o", "/dev/null", str(p)],
            False,
            ROOT,
        ),
        "pyrage": lambda m, p: ([py, "-c", PYRAGE, m, str(p), str(key)], True, ROOT),
    }
    if compare is not None:
        other = compare.resolve()
        tools[f"gateway.age@{compare}"] = lambda m, p: (
            [py, "-c", OURS, m, str(p), str(key)],
            True,
            other,
        )
    return tools


def _ratios(
    slower: list[tuple[float, float, int]], faster: list[tuple[float, float, int]]
) -> list[float]:
    """Per round, how many times faster ``faster`` ran than ``slower`` (wall time ratio)."""
    return [a[0] / b[0] for a, b in zip(slower, faster, strict=True)]


def report(
    results: dict[tuple[str, str], tuple[float, float, int]],
    tools: list[str],
    paired: dict[str, dict[str, list[float]]],
    size: int,
    runs: int,
) -> None:
    load = os.getloadavg()[0]
    print(
        f"plaintext {size / (1 << 20):.0f} MiB, page cache -> /dev/null, median of {runs}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}\n"
    )
    print(
        "| tool | encrypt GB/s | vs age | decrypt GB/s | vs age | CPU s/GB enc / dec | peak RSS enc / dec (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    base = {m: size / results[("age", m)][0] for m in ("encrypt", "decrypt")}
    for tool in tools:
        cells = []
        for mode in ("encrypt", "decrypt"):
            rate = size / results[(tool, mode)][0]
            cells += [f"{rate / 1e9:.2f}", f"{rate / base[mode]:.2f}x"]
        cpu = " / ".join(
            f"{results[(tool, m)][1] / (size / 1e9):.2f}" for m in ("encrypt", "decrypt")
        )
        rss = " / ".join(f"{results[(tool, m)][2] / (1 << 20):.0f}" for m in ("encrypt", "decrypt"))
        print(f"| {tool} | {' | '.join(cells)} | {cpu} | {rss} |")
    print()
    for other, by_mode in paired.items():
        print(
            f"gateway.age vs {other} within each round (min / median / max): "
            + ", ".join(
                f"{mode} {min(r):.2f}x / {statistics.median(r):.2f}x / {max(r):.2f}x"
                for mode, r in by_mode.items()
            )
        )


if __name__ == "__main__":
    main()
