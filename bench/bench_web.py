"""The dashboard's log browser on a million entries: first page, filtered pages, an entry's proof.

    .venv/bin/python bench/bench_web.py                  # 1,000,000 entries (about two minutes)
    .venv/bin/python bench/bench_web.py --entries 100000 # quicker

Fills a log of ``--entries`` valid entries straight into SQLite (the same leaves, subtree
hashes and head an append would write, computed in bulk: the browser reads the tables,
not the append path), then times pages through the real app as a signed-in auditor, each
request rendering the page: the first page, pages filtered by each indexed column alone
and combined, a day's window, a page deep into the log, and an entry's page (its inclusion
proof checked against a freshly signed checkpoint). Medians of ``--samples`` requests.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import base64
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update

from gateway import bootstrap
from gateway.app import create_app
from gateway.audit import merkle
from gateway.audit.leaf import encode_leaf
from gateway.audit.store import HEAD_ID, Entry, Head, Subtree, _lock_head
from gateway.config import Config
from gateway.runtime import Runtime
from gateway.services import identity

T0 = datetime(2026, 11, 1, 0, 0, 0)
ACTIONS = ("artifact.read", "access.request", "key.release", "content.download", "auth.denied")
BATCH = 20_000


def config(root: Path) -> Config:
    return Config().replace(
        **{
            "database.url": f"sqlite:///{root / 'gateway.db'}",
            "storage.root": str(root / "objects"),
            "keys.dir": str(root / "keys"),
            "audit.archive_dir": str(root / "audit"),
            "audit.origin": "bench.gateway/audit",
            "sweeper.interval_seconds": 0,
        }
    )


def row(i: int, step: timedelta) -> dict[str, object]:
    action = ACTIONS[i % len(ACTIONS)]
    values = {
        "time": T0 + step * i,
        "actor": f"prn_{i % 97:020x}",
        "org": f"agency-{i % 7}",
        "role": "evaluator",
        "action": action,
        "artifact": f"art_{i % 1013:020x}",
        "grant": f"grt_{i % 331:020x}",
        "outcome": "denied" if action == "auth.denied" else "ok",
        "request_id": f"req_{i:024x}",
    }
    leaf = encode_leaf(index=i, ip="127.0.0.1", details={"bytes": i * 17}, **values)
    grant = values.pop("grant")
    return {"idx": i, "leaf": leaf, "grant_id": grant, "subject_org": f"lab-{i % 5}", **values}


def fill(rt: Runtime, count: int) -> float:
    """``count`` entries in 30 days, with their subtrees and head; entries per second."""
    t0 = time.perf_counter()
    step = timedelta(days=30) / count
    tree = merkle.CompactRange()
    with rt.db.session() as session:
        start = session.get(Head, HEAD_ID)
        assert start is None or start.size == 0, "fill an empty log"
    for first in range(0, count, BATCH):
        rows = [row(i, step) for i in range(first, min(count, first + BATCH))]
        nodes = []
        for r in rows:
            created = tree.append(merkle.leaf_hash(r["leaf"]))
            nodes += [{"level": n.level, "idx": n.index, "hash": h} for n, h in created]
        with rt.db.session() as session:
            conn = session.connection()  # column keys (idx, grant_id), as the store writes them
            conn.execute(insert(Entry), rows)
            conn.execute(insert(Subtree), nodes)
        print(f"  {first + len(rows):>9} entries", file=sys.stderr)
    with rt.db.session() as session:
        _lock_head(session)
        session.execute(
            update(Head)
            .where(Head.id == HEAD_ID)
            .values(size=tree.size, root=tree.root(), border=b"".join(tree.hashes))
        )
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=21)
    ap.add_argument("--dir", type=Path, help="keep the gateway here; run again to reuse its log")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    root = args.dir or Path(tmp.name)
    reuse = (root / "gateway.db").exists()
    cfg = config(root)
    list(bootstrap.init(cfg))
    rt = Runtime(cfg)
    with rt.db.session() as session:
        identity.ensure_org(session, "oversight", "oversight", rt.now())
        token, _ = identity.create_token(
            session, org="oversight", role="auditor", name="otto", ttl_days=1, now=rt.now()
        )
    rate = 0.0 if reuse else fill(rt, args.entries)
    client = create_app(cfg, runtime=rt).test_client()
    page = client.get("/ui/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert csrf
    signed = client.post("/ui/sign-in", data={"token": token, "csrf_token": csrf.group(1)})
    assert signed.status_code == 303
    n = args.entries
    day = (T0 + timedelta(days=20)).strftime("%Y-%m-%d")
    paths = [
        ("first page (50 entries)", "/ui/audit"),
        ("a page deep in the log (after entry 900,000)", None),
        ("by organisation", "/ui/audit?org=agency-3"),
        ("by action", "/ui/audit?action=key.release"),
        ("by outcome (refusals)", "/ui/audit?outcome=denied"),
        ("by artifact", f"/ui/audit?artifact=art_{500:020x}"),
        ("by organisation and action", "/ui/audit?org=agency-3&action=content.download"),
        ("one day (UTC)", f"/ui/audit?since={day}&until={day}"),
        ("one day, by artifact", f"/ui/audit?since={day}&until={day}&artifact=art_{500:020x}"),
        ("an entry and its verified inclusion proof", f"/ui/audit/entries/{n // 2}"),
    ]
    deep_cursor = (
        base64.urlsafe_b64encode(f"[{min(900_000, n - 100)}]".encode()).decode().rstrip("=")
    )
    print(f"\n{n:,} entries" + (f", filled at {rate:,.0f} entries/s" if rate else "") + "\n")
    print("| page | median | slowest |")
    print("|---|---|---|")
    for label, path in paths:
        path = path or f"/ui/audit?cursor={deep_cursor}"
        times = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            r = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, (path, r.status_code)
        assert "No entries match" not in r.get_data(as_text=True), path
        print(f"| {label} | {statistics.median(times):.1f} ms | {max(times):.1f} ms |")
    rt.close()


if __name__ == "__main__":
    main()
