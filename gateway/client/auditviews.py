"""``gateway audit verify``, online: the filtered lists the gateway serves, checked against the leaves.

Design note. While the verifier streams every leaf, :class:`ViewCheck` keeps, per filter
value it derives from the leaves (:class:`gateway.audit.views.Memberships`: every org an
entry concerns, every action, every artifact and actor), the indexes that value must list.
Once the log itself verifies, it asks the gateway for the filtered lists (every org and
action; :data:`SAMPLE` artifacts and actors picked at random, which the gateway cannot
foresee) and compares each with what the leaves say (:func:`gateway.audit.views.compare`),
naming the first entry a list leaves out or should not hold. Memory: 8 bytes per entry and
filter.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import takewhile
from typing import Any

from gateway.audit.verify import Verdict
from gateway.audit.views import FILTERS, Memberships, compare, listed
from gateway.client.http import Api

SAMPLE = 16
"""How many artifacts, and how many actors, have their lists checked in one run."""

Listed = tuple[int, bytes, dict[str, Any] | None]


class ViewCheck:
    """Learns the filter memberships from the leaves as they stream, then checks the lists."""

    def __init__(self, sample: int = SAMPLE) -> None:
        self.memberships = Memberships()
        self.sample = sample

    def tap(self, leaves: Iterable[Listed]) -> Iterator[Listed]:
        """``leaves``, unchanged, each learnt on its way through."""
        for item in leaves:
            self.memberships.add(item[0], item[1])
            yield item

    def _chosen(self) -> list[tuple[str, str]]:
        pick = random.SystemRandom()
        out: list[tuple[str, str]] = []
        for name in FILTERS:
            values = self.memberships.values(name)
            if name in ("artifact", "actor") and len(values) > self.sample:
                values = sorted(pick.sample(values, self.sample))
            out.extend((name, v) for v in values)
        return out

    def check(self, api: Api, verdict: Verdict) -> Verdict:
        """``verdict``, failed at the first list that disagrees with the leaves (if it was ok)."""
        if not verdict.ok or verdict.size is None:
            return verdict
        size = verdict.size
        chosen = self._chosen()
        for name, value in chosen:
            expected = self.memberships.indexes[(name, value)]
            items = api.items("/v1/audit/entries", **{name: value})
            below = takewhile(lambda pair: pair[0] < size, listed(items))
            problem = compare(name, value, expected, below, self.memberships.v1)
            if problem is not None:
                return Verdict.failure(problem[1], problem[0], size)
        return replace(
            verdict, message=f"{verdict.message}; {len(chosen)} filtered lists match the leaves"
        )
