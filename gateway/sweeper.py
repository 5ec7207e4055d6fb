"""The sweeper: stale completions and uploads, interrupted shreds, expiry, deletions, denials, anchors.

Run once by ``gateway sweep`` and every ``sweeper.interval_seconds`` inside
``gateway serve``, in every worker of every instance. Each step runs only under its
leader lock (:meth:`gateway.db.Database.leader`, named after the step): on one database,
one process at a time runs a given step, and a sweeper that finds it held skips that
step this time (another is doing it). Steps whose rows are claimed by compare-and-set
(expiry, shredding) would be safe without it; the others need it: two sweepers could
each time out one upload, each record one closed denial interval, or each publish a
checkpoint of the same size (a checkpoint's name carries its time).

Each step is guarded: one that fails is logged, counts 0, and does not stop the others;
the next sweep tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from gateway import events
from gateway.runtime import Runtime
from gateway.services import anchor, completion, lifecycle, uploads

log = logging.getLogger("gateway.sweeper")


def _guarded(
    rt: Runtime, what: str, step: Callable[[], dict[str, int]], zero: dict[str, int]
) -> dict[str, int]:
    """``step()`` if this sweeper leads ``what`` now, else ``zero``; a failure logged, as ``zero``."""
    try:
        with rt.db.leader(f"sweep: {what}") as leading:
            if not leading:
                log.debug("sweep step %s: another sweeper is running it", what)
                return zero
            return step()
    except Exception:  # one failing step must not stop the others; retried next sweep
        log.exception("sweep step failed: %s; retrying next sweep", what)
        return zero


def sweep_once(rt: Runtime) -> dict[str, int]:
    """One pass; returns what it did, by kind."""
    now = rt.now()
    stale_before = now - timedelta(hours=rt.config.uploads.open_ttl_hours * 2)
    # Stale completions first: one returned to open is then timed out like any open upload.
    report = _guarded(
        rt,
        "finish or revert stale completions",
        lambda: completion.sweep_stale(rt, now),
        {"completions_finished": 0, "completions_reverted": 0},
    )
    report |= _guarded(
        rt,
        "time out stale uploads",
        lambda: {"uploads_timed_out": uploads.sweep_stale(rt, now)},
        {"uploads_timed_out": 0},
    )
    # Ended uploads whose key destruction or commit failed: their keys destroyed now.
    report |= _guarded(
        rt,
        "destroy the keys of ended uploads",
        lambda: {"upload_keys_destroyed": uploads.sweep_ended_keys(rt)},
        {"upload_keys_destroyed": 0},
    )
    # Shreds whose key destruction or commit failed: finished before their objects go.
    report |= _guarded(
        rt,
        "finish interrupted shreds",
        lambda: {"shreds_finished": lifecycle.sweep_shredding(rt)},
        {"shreds_finished": 0},
    )
    # The backlog first: objects of artifacts shredded earlier whose deletion failed.
    report |= _guarded(
        rt,
        "delete the stored objects of shredded artifacts",
        lambda: {"objects_deleted": lifecycle.sweep_deletions(rt)},
        {"objects_deleted": 0},
    )
    report |= _guarded(
        rt,
        "expire artifacts and grants",
        lambda: lifecycle.sweep(rt, now),
        {"artifacts_expired": 0, "grants_expired": 0},
    )
    report |= _guarded(
        rt,
        "clean up abandoned store uploads",
        lambda: {"orphan_store_uploads": rt.store.cleanup_stale_uploads(stale_before)},
        {"orphan_store_uploads": 0},
    )
    report |= _guarded(
        rt,
        "close denial intervals",
        lambda: {"denial_intervals_closed": events.close_denials(rt, now)},
        {"denial_intervals_closed": 0},
    )
    report |= _guarded(
        rt,
        "publish an audit anchor",
        lambda: {"anchors_published": 1 if anchor.publish(rt) else 0},
        {"anchors_published": 0},
    )
    return report
