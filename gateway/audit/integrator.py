"""The background integrator: folds sequenced entries into the tree, in batches, in every instance.

``gateway serve`` runs :func:`run_forever` in a thread of each worker
(``audit.integrate_interval_ms``; 0: no thread). Each round runs under the leader lock
``audit: integrate`` (:meth:`gateway.db.Database.leader`), so of all the instances on one
database one integrates at a time and the others skip that round rather than queue on the
head row. A round integrates up to ``audit.integrate_batch`` entries per transaction
(:func:`gateway.audit.store.integrate`) until nothing is left, then waits the interval.

Nothing depends on this thread for correctness: every reader of the tree integrates what
is pending first (:mod:`gateway.audit.store`). It keeps the pending table short, so that
readers (checkpoints, proofs, the log's pages) rarely wait for a large batch.
"""

from __future__ import annotations

import logging
import threading

from gateway.audit import store
from gateway.db import Database

log = logging.getLogger("gateway.audit.integrator")

LEADER = "audit: integrate"


def integrate_round(db: Database, batch: int) -> int:
    """Integrate everything pending, ``batch`` entries a transaction, if this caller leads now."""
    done = 0
    with db.leader(LEADER) as leading:
        if not leading:
            return 0
        while True:
            with db.session() as session:
                n = store.integrate(session, batch)
            done += n
            if n < batch:
                return done


def run_forever(db: Database, interval_ms: int, batch: int, stop: threading.Event) -> None:
    """Integrate every ``interval_ms`` until ``stop`` is set; a failing round is logged and retried."""
    while not stop.wait(interval_ms / 1000):
        try:
            integrate_round(db, batch)
        except Exception:  # noqa: BLE001 - the integrator must outlive one failed round
            log.exception("audit integration failed; retrying in %s ms", interval_ms)


def start(url: str, interval_ms: int, batch: int) -> threading.Thread | None:
    """A daemon thread integrating the log at ``url`` (None when ``interval_ms`` is 0)."""
    if interval_ms <= 0:
        return None
    thread = threading.Thread(
        target=run_forever,
        args=(Database(url), interval_ms, batch, threading.Event()),
        name="audit-integrator",
        daemon=True,
    )
    thread.start()
    return thread
