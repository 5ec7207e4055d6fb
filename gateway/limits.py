"""Rate limits: budgets per client address (before authentication) and per principal (after).

Requests are of four kinds, each with its own budget, so that one kind cannot starve
another (a lab's own listings never use up its part uploads): ``reads`` (GET, HEAD,
OPTIONS), ``writes`` (every other method), ``parts`` (a part's PUT) and ``content``
(downloads, signed URLs included). Every request counts against its address's budget of
its kind before anything else is done with it; an authenticated one counts against its
principal's as well. Past either, the answer is 429 with ``Retry-After`` and the refusal
is counted in ``/metrics`` (never logged in the audit log, so nobody can flood it).

Budgets are written as the ``limits`` library writes rates (``"600/minute"``, several
separated by ``;``) in ``[limits]``; counts are sliding windows. With the default
``storage_uri = "memory://"`` each process counts on its own: behind several workers or
instances a client gets up to that many times its budget. A shared store
(``redis://...``, ``memcached://...``; its client library installed) makes one budget for
all of them.

The budgets are the ``limits`` library's; Flask-Limiter is built on it, but checks at
points of its own (its ``before_request``, or decorators on views) where the principal is
not known yet, so the gateway asks the library itself, at the two points it needs.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many, storage, strategies

from gateway import metrics
from gateway.config import LimitsConfig
from gateway.errors import TooManyRequests

READS, WRITES, PARTS, CONTENT = metrics.RATE_BUDGETS
PRINCIPAL, ADDRESS = metrics.RATE_SCOPES


class RateLimits:
    """The budgets of one configuration, and the store their counts are kept in."""

    def __init__(self, config: LimitsConfig) -> None:
        self.enabled = config.rate_limits
        self._store = storage.storage_from_string(config.storage_uri)
        self._limiter = strategies.SlidingWindowCounterRateLimiter(self._store)
        self._budgets: dict[tuple[str, str], list[RateLimitItem]] = {
            (scope, budget): parse_many(getattr(config, f"{scope}_{budget}"))
            for scope in metrics.RATE_SCOPES
            for budget in metrics.RATE_BUDGETS
        }

    def hit(self, scope: str, budget: str, key: str) -> None:
        """Count one request of ``key`` (an address or a principal id); 429 past the budget."""
        if not self.enabled:
            return
        for item in self._budgets[(scope, budget)]:
            if self._limiter.hit(item, scope, budget, key):
                continue
            metrics.RATE_LIMITED.labels(scope, budget).inc()
            reset = self._limiter.get_window_stats(item, scope, budget, key).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            whose = "this principal" if scope == PRINCIPAL else "this client address"
            raise TooManyRequests(
                f"{whose} has sent more {budget} requests than its budget of {item}; "
                f"retry after {wait} s",
                retry_after=wait,
            )

    def reset(self) -> None:
        """Forget every count (tests, and an operator's reload)."""
        self._store.reset()


def budget_of(method: str, endpoint: str | None) -> str:
    """The budget a request counts against, from its method and the view that serves it."""
    if endpoint == "uploads.put_part":
        return PARTS
    if endpoint in ("content.download", "content.signed"):
        return CONTENT
    return READS if method in ("GET", "HEAD", "OPTIONS") else WRITES
