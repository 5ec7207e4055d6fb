"""A model directory through the tar writer and age, and back through the extractor.

A directory of 8 shards (2 GiB in all by default) and a few small files is:
  seal: planned, archived by ``gateway.tree`` (each file hashed for its commitment)
        and encrypted by ``gateway.age`` to /dev/null (and the same without the
        commitments, to show what they cost), against
        ``tar -cf - -C DIR . | age -e -r R -o /dev/null``;
  open: an age file of its archive decrypted by ``gateway.age`` and extracted by
        ``gateway.tree`` (each file verified against its commitment, fsynced, linked
        into place), against ``age -d -i KEY FILE | tar -xf - -C OUT`` and the same
        followed by ``sync`` (the extractor makes every file durable; tar does not).
Each contender runs in its own process, interleaved (every other round in the reverse
order, so none always follows the same one), its input read just before so the
page cache is warm for all; CPU s is the user and system time of its processes; peak
RSS is the largest of its processes' (GNU ``time -f %M``; measured from this script's
own ``wait4`` it would include this script, whose pages a child holds until it execs).
Target: faster than the baselines, peak RSS under 200 MiB. The commitments stand in
for the manifest's keyed hash: HMAC-SHA256 (``--commitment hmac-sha256``, the default)
or keyed BLAKE3 (``--commitment blake3``, the ``blake3`` package), over the member's
name and content.

    .venv/bin/python bench/bench_tree.py [--size-mib 2048] [--shards 8] [--runs 3]
                                         [--commitment hmac-sha256|blake3] [--work DIR]
                                         [--only open --only 'tar -x' ...]

Prints a markdown table of medians, with the range.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import age  # noqa: E402 - after the checkout is on the path
from gateway.age import stream  # noqa: E402
from gateway.tree.commit import FileEntry, Hasher, archive_commitment, file_entries  # noqa: E402
from gateway.tree.extract import ArchiveCheck  # noqa: E402
from gateway.tree.plan import plan_tree  # noqa: E402
from gateway.tree.transfer import extract_payload, seal_tree  # noqa: E402

MIB = 1 << 20
KEY = b"bench-commitment-key-32-bytes..."
COMMITMENT = os.environ.get("BENCH_TREE_COMMITMENT", "hmac-sha256")


def commit(path: str) -> Hasher:
    if COMMITMENT == "blake3":
        import blake3

        hasher: Hasher = blake3.blake3(path.encode() + b"\0", key=KEY)
        return hasher
    return hmac.new(KEY, path.encode() + b"\0", "sha256")


def archive_hasher() -> Hasher:
    return hmac.new(KEY, b"archive\0", "sha256")


def make_model(root: Path, size_mib: int, shards: int) -> None:
    root.mkdir(parents=True)
    block = os.urandom(4 * MIB)
    per = size_mib * MIB // shards
    for i in range(1, shards + 1):
        with open(root / f"model-{i:05d}-of-{shards:05d}.safetensors", "wb") as fh:
            for _ in range(per // len(block)):
                fh.write(block)
            fh.write(block[: per % len(block)])
            block = block[1:] + block[:1]
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    (root / "config.json").write_text("{}")
    (root / "tokenizer").mkdir()
    (root / "tokenizer/tokenizer.json").write_text("{}")


def seal(model: Path, out: str, identity: str, hashed: bool = True) -> dict[str, object]:
    """Archive and encrypt ``model`` into ``out``; the sidecar a pull needs (key, manifest)."""
    plan = plan_tree(model)
    file_key, nonce = os.urandom(16), os.urandom(16)
    recipient = age.parse_identity(identity).to_recipient()  # type: ignore[attr-defined]
    header = age.wrap_file_key(file_key, [recipient])
    aead = stream.payload_key(file_key, nonce)
    src, pieces = seal_tree(plan, aead, commit=commit if hashed else None)
    with open(out, "wb", buffering=0) as fh, src:
        fh.write(header + nonce)
        for piece in pieces:
            fh.write(piece)
    if not hashed:
        return {}
    files = file_entries(plan.members, src.commitments)
    return {
        "file_key": file_key.hex(),
        "files": [[f.path, f.size, f.commitment.hex()] for f in files],
        "archive": archive_commitment(plan.members, src.commitments, archive_hasher()).hex(),
    }


def open_into(age_file: Path, sidecar: Path, out: Path) -> None:
    side = json.loads(sidecar.read_text())
    files = [FileEntry(p, s, bytes.fromhex(c)) for p, s, c in side["files"]]
    with open(age_file, "rb", buffering=0) as fh:
        header = age.read_header(fh)
        nonce = fh.read(16)
        aead = stream.payload_key(bytes.fromhex(side["file_key"]), nonce)
        fd = fh.fileno()
        size = os.fstat(fd).st_size - len(header.raw) - 16
        pieces = stream.unseal_file(fd, len(header.raw) + 16, size, aead)
        check = ArchiveCheck(bytes.fromhex(side["archive"]), archive_hasher())
        extract_payload(pieces, out, files, commit, archive=check)


Run = tuple[float, float, int]  #: wall seconds, CPU seconds (user + system), peak RSS bytes


def timed(argv: list[str], rss_file: Path) -> Run:
    """Run ``argv`` under GNU time: wall and CPU time of its processes, its largest peak RSS."""
    timer = ["/usr/bin/time", "-f", "%M %U %S", "-o", str(rss_file)]
    start = time.perf_counter()
    done = subprocess.run([*timer, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    rss, user, system = rss_file.read_text().split()[-3:]
    return elapsed, float(user) + float(system), int(rss) * 1024


def contenders(work: Path, model: Path, key: Path, recipient: str) -> dict[str, list[str]]:
    me = [sys.executable, __file__]
    out = str(work / "out")
    tar_age = f"tar -cf - -C {model} . | age -e -r {recipient} -o /dev/null"
    age_tar = f"mkdir {out} && age -d -i {key} {work / 'model.age'} | tar -xf - -C {out}"
    return {
        "gateway.tree + gateway.age (seal)": [*me, "seal", str(model), "/dev/null", str(key)],
        "the same, no commitments (seal)": [*me, "seal-bare", str(model), "/dev/null", str(key)],
        "tar -c | age -e": ["sh", "-c", tar_age],
        "gateway.age + gateway.tree (open)": [
            *me,
            "open",
            str(work / "model.age"),
            str(work / "sidecar.json"),
            out,
        ],
        "age -d | tar -x": ["sh", "-c", age_tar],
        "age -d | tar -x; sync": ["sh", "-c", age_tar + " && sync"],
    }


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-tree-", dir=args.work))
    try:
        model = work / "model"
        make_model(model, args.size_mib, args.shards)
        key = work / "key.txt"
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        recipient = subprocess.run(
            ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        side = seal(model, str(work / "model.age"), _identity(key))
        (work / "sidecar.json").write_text(json.dumps(side))
        results: dict[str, list[Run]] = {}
        for run_no in range(args.runs):
            order = list(contenders(work, model, key, recipient).items())
            for name, argv in order if run_no % 2 == 0 else order[::-1]:
                if args.only and not any(word in name for word in args.only):
                    continue
                shutil.rmtree(work / "out", ignore_errors=True)
                os.sync()
                _warm(model if "seal" in name or "tar -c" in name else work / "model.age")
                results.setdefault(name, []).append(timed(argv, work / "rss"))
        _table(results, args.size_mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _warm(path: Path) -> None:
    """Read ``path`` (a file, or every file under it) so the contender finds it cached."""
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb", buffering=0) as fh:
            while fh.read(8 * MIB):
                pass


def _identity(key: Path) -> str:
    return next(ln for ln in key.read_text().splitlines() if ln.startswith("AGE-SECRET-KEY-"))


def _table(results: dict[str, list[Run]], size_mib: int) -> None:
    print(f"| {size_mib} MiB, {COMMITMENT} | median s | range s | GB/s | CPU s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        times = [t for t, _, _ in runs]
        med = statistics.median(times)
        cpu = statistics.median(c for _, c, _ in runs)
        rss = max(r for _, _, r in runs) / MIB
        gbps = size_mib * MIB / med / 1e9
        print(
            f"| {name} | {med:.2f} | {min(times):.2f}-{max(times):.2f} | {gbps:.2f} "
            f"| {cpu:.2f} | {rss:.0f} MiB |"
        )
    print(f"(load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("seal", "seal-bare"):
        seal(Path(sys.argv[2]), sys.argv[3], _identity(Path(sys.argv[4])), sys.argv[1] == "seal")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "open":
        open_into(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only", action="append", help="run only contenders whose name holds this (repeatable)"
    )
    parser.add_argument("--commitment", choices=["hmac-sha256", "blake3"], default=COMMITMENT)
    parser.add_argument("--work", default=None, help="where to make the model (default: TMPDIR)")
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("bench_tree: needs GNU time (Debian package time)")
    os.environ["BENCH_TREE_COMMITMENT"] = args.commitment
    globals()["COMMITMENT"] = args.commitment
    run(args)


if __name__ == "__main__":
    main()
