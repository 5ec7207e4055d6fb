"""The sweeper: expiry, crypto-shredding, stale uploads, audit anchors.

Run once by ``gateway sweep`` and every ``sweeper.interval_seconds`` inside
``gateway serve``. Each step is its own transaction and checks state before acting, so
sweeps are safe to run concurrently and repeatedly.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from gateway.runtime import Gateway

log = logging.getLogger("gateway.sweeper")


def sweep_once(gw: Gateway) -> dict[str, int]:
    """One pass; returns what it did, by kind."""
    from gateway.services import access, anchor, uploads

    now = gw.now()
    report = {"uploads_timed_out": uploads.sweep_stale(gw, now)}
    report.update(access.sweep(gw, now))
    stale_before = now - timedelta(hours=gw.config.uploads.open_ttl_hours * 2)
    try:
        report["orphan_store_uploads"] = gw.store.cleanup_stale_uploads(stale_before)
    except Exception as exc:  # noqa: BLE001 - cleanup of abandoned store data is best effort
        log.warning("cleanup of stale store uploads failed: %s", exc)
        report["orphan_store_uploads"] = 0
    try:
        report["anchors_published"] = 1 if anchor.publish(gw) else 0
    except Exception as exc:  # noqa: BLE001 - retried on the next sweep; the log itself is intact
        log.error("publishing an audit anchor failed: %s", exc)
        report["anchors_published"] = 0
    return report
