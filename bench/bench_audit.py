"""Audit log benchmark on SQLite: append rate, then roots and proofs at the resulting size.

    .venv/bin/python bench/bench_audit.py                    # 1,000,000 entries (several minutes)
    .venv/bin/python bench/bench_audit.py --entries 100000   # quicker

Appends ``--entries`` entries in transactions of ``--batch``, then ``--single`` more with one
transaction (and one durable commit) each, then times root, inclusion proof, consistency
proof, signed checkpoint and a filtered page of entries at that size (median of
``--samples`` calls, each in its own transaction, as an API request would); with ``--verify``
also an export of the whole log and its offline verification. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

import gateway.audit.store  # noqa: F401 - registers the audit tables
from gateway.audit import merkle, note, store, verify
from gateway.db import Database

ORIGIN = "bench.gateway/audit"
T0 = datetime(2026, 11, 26, 12, 0, 0)
ACTIONS = (
    "artifact.read",
    "access.request",
    "key.release",
    "content.download",
    "url.issue",
    "auth.denied",
)


def _append(session: Session, i: int) -> None:
    store.append(
        session,
        time=T0 + timedelta(milliseconds=i),
        actor=f"prn_{i % 97:04x}",
        org=f"agency-{i % 7}",
        role="evaluator",
        action=ACTIONS[i % len(ACTIONS)],
        artifact=f"art_{i % 1013:08x}",
        grant=f"grt_{i % 331:08x}",
        subject_org=f"lab-{i % 5}",
        request_id=f"req-{i:012d}",
        ip="127.0.0.1",
        details={"bytes": i * 17},
    )


def bulk(db: Database, start: int, count: int, batch: int) -> float:
    """Append ``count`` entries in transactions of ``batch``; the rate in appends/s."""
    t0 = time.perf_counter()
    done = 0
    while done < count:
        with db.session() as s:
            for i in range(start + done, start + min(count, done + batch)):
                _append(s, i)
        done = min(count, done + batch)
        if done % (100 * batch) == 0 or done == count:
            rate = done / (time.perf_counter() - t0)
            print(f"  {start + done:>9} entries, {rate:,.0f} appends/s", file=sys.stderr)
    return count / (time.perf_counter() - t0)


def median_ms(db: Database, samples: int, call: Callable[[Session, random.Random], Any]) -> float:
    rnd = random.Random(1)
    times = []
    for _ in range(samples):
        with db.session() as s:
            t0 = time.perf_counter()
            call(s, rnd)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def export_and_verify(db: Database, signer: note.Signer, path: Path) -> tuple[float, float]:
    """Seconds to export the whole log to ``path`` and to verify that file offline."""
    t0 = time.perf_counter()
    with db.session() as s, path.open("w") as f:
        f.writelines(store.export(s, signer, ORIGIN))
    t1 = time.perf_counter()
    with path.open() as f:
        verdict = verify.verify_export(f, signer.verifier_key, origin=ORIGIN)
    if not verdict.ok:
        raise SystemExit(f"bench: error: the export does not verify: {verdict.message}")
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--single", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    ap.add_argument(
        "--reuse", action="store_true", help="with --db: time reads on the entries already there"
    )
    ap.add_argument(
        "--verify", action="store_true", help="also time an export and its offline verification"
    )
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    path = args.db or Path(tmp.name) / "audit-bench.db"
    db = Database(f"sqlite:///{path}")
    db.create_all()
    signer = note.Signer.generate(ORIGIN)

    rows: list[tuple[str, str, str]] = []
    with db.session() as s:
        existing = store.size(s)
    if not (args.reuse and existing):
        batched = bulk(db, existing, args.entries, args.batch)
        single = bulk(db, existing + args.entries, args.single, 1)
        rows += [
            (
                f"append, {args.batch} per transaction",
                f"{batched:,.0f} appends/s",
                f"{args.entries:,} entries",
            ),
            (
                "append, 1 per transaction (durable commit each)",
                f"{single:,.0f} appends/s",
                f"{args.single:,} entries at size ~{existing + args.entries:,}",
            ),
        ]
    with db.session() as s:
        n = store.size(s)
        head_root = store.root(s, n)
        check_index = random.Random(2).randrange(n)
        proof = store.inclusion_proof(s, check_index, n)
        merkle.verify_inclusion(
            check_index, n, merkle.leaf_hash(store.leaf(s, check_index)), proof, head_root
        )

    rows += [
        (
            "root at the head",
            f"{median_ms(db, args.samples, lambda s, r: store.root(s, n)):.3f} ms",
            f"size {n:,}",
        ),
        (
            "root at a random older size",
            f"{median_ms(db, args.samples, lambda s, r: store.root(s, r.randrange(1, n))):.3f} ms",
            "",
        ),
        (
            "inclusion proof (random index)",
            f"{median_ms(db, args.samples, lambda s, r: store.inclusion_proof(s, r.randrange(n), n)):.3f} ms",
            f"{len(proof)} hashes",
        ),
        (
            "consistency proof (random old size)",
            f"{median_ms(db, args.samples, lambda s, r: store.consistency_proof(s, r.randrange(1, n), n)):.3f} ms",
            "",
        ),
        (
            "signed checkpoint",
            f"{median_ms(db, args.samples, lambda s, r: store.sign_checkpoint(s, signer, ORIGIN)):.3f} ms",
            "",
        ),
        (
            "100 entries filtered by action",
            f"{median_ms(db, args.samples, lambda s, r: store.entries(s, r.randrange(n), 100, action='key.release')):.3f} ms",
            "",
        ),
    ]
    if args.verify:
        export_s, verify_s = export_and_verify(db, signer, path.with_suffix(".jsonl"))
        rows.append(
            (
                "export the whole log (JSON Lines)",
                f"{export_s:.1f} s",
                f"{n / export_s:,.0f} entries/s",
            )
        )
        rows.append(
            ("offline verify of that export", f"{verify_s:.1f} s", f"{n / verify_s:,.0f} entries/s")
        )
    size_mib = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
    print(f"\nAudit log on SQLite ({path.name}, {size_mib:,.0f} MiB incl. WAL), {n:,} entries\n")
    print("| operation | result | notes |")
    print("|---|---|---|")
    for op, result, notes in rows:
        print(f"| {op} | {result} | {notes} |")
    db.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
