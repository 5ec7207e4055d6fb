"""What the event loop holds for its clients, counted per client address and in all.

Each connection's bytes in the loop (a head, a body, the start of a part, an answer not
yet sent) count against its address and against the whole. An address may hold at most
``max_buffered_per_address`` bytes and ``max_connections_per_address`` connections;
the loop at most ``max_buffered_bytes``. Past the loop's budget, the connection holding
the most gives way (:meth:`Budget.largest`), so that a few clients holding large bodies
cannot make every newcomer's small request the one refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gateway.edge import EdgeLimits


class Holder(Protocol):
    """A connection as the budget sees it."""

    address: str
    held: int
    born: float

    def holding(self) -> int: ...


C = TypeVar("C", bound="Holder")


@dataclass
class Share:
    """What one client address holds: connections, and bytes in the loop."""

    conns: int = 0
    held: int = 0


class Budget:
    """The counts, and the limits they are held to."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.addresses: dict[str, Share] = {}
        self.total = 0

    def admit(self, conn: Holder) -> bool:
        """Count a new connection of its address; False (counting nothing) past the cap."""
        share = self.addresses.get(conn.address)
        cap = self.limits.max_connections_per_address
        if cap and share is not None and share.conns >= cap:
            return False
        if share is None:
            share = self.addresses[conn.address] = Share()
        share.conns += 1
        return True

    def count(self, conn: Holder) -> None:
        """Bring the counts up to date with what ``conn`` holds now."""
        now = conn.holding()
        delta, conn.held = now - conn.held, now
        if delta:
            self.total += delta
            self.addresses[conn.address].held += delta

    def release(self, conn: Holder) -> None:
        """``conn`` is closed (it holds nothing any more): forget it."""
        self.count(conn)
        share = self.addresses.get(conn.address)
        if share is None:
            return
        share.conns -= 1
        if share.conns <= 0 and share.held <= 0:
            del self.addresses[conn.address]

    def address_over(self, conn: Holder) -> bool:
        """Whether ``conn``'s address holds more bytes than it may."""
        return self.addresses[conn.address].held > self.limits.max_buffered_per_address

    def over(self) -> bool:
        """Whether the loop holds more bytes than it may."""
        return self.total > self.limits.max_buffered_bytes

    @staticmethod
    def largest(conns: Iterable[C]) -> C | None:
        """The connection holding the most (the oldest of equals), None if none holds any."""
        holders = (c for c in conns if c.held)
        return max(holders, key=lambda c: (c.held, -c.born), default=None)
