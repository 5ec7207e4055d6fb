"""The sweeper: time out stale uploads (and, with access, expire grants and artifacts)."""

from __future__ import annotations

from gateway.runtime import Gateway


def sweep_once(gw: Gateway) -> dict[str, int]:
    """One pass; returns what it did, by kind. Safe to run concurrently and repeatedly."""
    from gateway.services import access, uploads

    now = gw.now()
    report = {"uploads_timed_out": uploads.sweep_stale(gw, now)}
    report.update(access.sweep(gw, now))
    try:
        report["orphan_store_uploads"] = gw.store.cleanup_stale_uploads(now.replace(microsecond=0) - _ttl(gw))
    except Exception:  # noqa: BLE001 - cleanup of abandoned store data is best effort
        report["orphan_store_uploads"] = 0
    return report


def _ttl(gw: Gateway):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(hours=gw.config.uploads.open_ttl_hours * 2)
