"""Each log's request budget: the ``qpd`` of its log-list entry, enforced as a token bucket.

Design note. The witness network's ``logs/v0`` list gives each log a ``qpd``, the requests
per day the witness expects from it. What costs a witness is a new cosignature (an
ML-DSA-44 and an Ed25519 signature, a durable write); refusals and replays of the checkpoint
it already cosigned cost no signature and no write (:mod:`gateway.witness.core`), so only a
new cosignature spends from the budget. Spending only there means nobody but the log can
spend it: a new cosignature needs a checkpoint the log signed and the witness has not seen.

The bucket refills at ``qpd`` per 86,400 seconds and holds at most an hour's worth (at
least one), so a log can catch up after a pause without sending a whole day at once. It
lives in the memory of one process: with several gunicorn workers each has its own, and
the budget is per worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DAY_SECONDS = 86_400
HOUR_SECONDS = 3_600

Clock = Callable[[], float]


class Budget:
    """``qpd`` new cosignatures a day, at most an hour's worth at once. Thread-safe."""

    def __init__(self, qpd: int, clock: Clock = time.monotonic) -> None:
        if qpd < 1:
            raise ValueError("a budget needs a qpd of at least 1")
        self.rate = qpd / DAY_SECONDS
        self.capacity = max(1.0, qpd * HOUR_SECONDS / DAY_SECONDS)
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def spend(self) -> float:
        """Spend one request: 0.0 if the budget allowed it, else the seconds until it will."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate
