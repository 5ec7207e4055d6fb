"""The sweeper: stale completions and uploads, expiry, shredding, deletions, denials, anchors.

Run once by ``gateway sweep`` and every ``sweeper.interval_seconds`` inside
``gateway serve``. Each step is its own transaction and checks state before acting, so
sweeps may run repeatedly and concurrently without doing anything twice, with one
exception: anchors. Sweepers running at once (several workers) can each publish a
checkpoint of the same size, since a checkpoint's name carries its time.

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


def _guarded(what: str, step: Callable[[], dict[str, int]], zero: dict[str, int]) -> dict[str, int]:
    try:
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
        "finish or revert stale completions",
        lambda: completion.sweep_stale(rt, now),
        {"completions_finished": 0, "completions_reverted": 0},
    )
    report |= _guarded(
        "time out stale uploads",
        lambda: {"uploads_timed_out": uploads.sweep_stale(rt, now)},
        {"uploads_timed_out": 0},
    )
    # The backlog first: objects of artifacts shredded earlier whose deletion failed.
    report |= _guarded(
        "delete the stored objects of shredded artifacts",
        lambda: {"objects_deleted": lifecycle.sweep_deletions(rt)},
        {"objects_deleted": 0},
    )
    report |= _guarded(
        "expire artifacts and grants",
        lambda: lifecycle.sweep(rt, now),
        {"artifacts_expired": 0, "grants_expired": 0},
    )
    report |= _guarded(
        "clean up abandoned store uploads",
        lambda: {"orphan_store_uploads": rt.store.cleanup_stale_uploads(stale_before)},
        {"orphan_store_uploads": 0},
    )
    report |= _guarded(
        "close denial intervals",
        lambda: {"denial_intervals_closed": events.close_denials(rt, now)},
        {"denial_intervals_closed": 0},
    )
    report |= _guarded(
        "publish an audit anchor",
        lambda: {"anchors_published": 1 if anchor.publish(rt) else 0},
        {"anchors_published": 0},
    )
    return report
