"""The link monitor: which nodes (sites) are reachable, from the heartbeats they send. Pure.

A node that has sent no heartbeat for `timeout` seconds is unreachable; its next heartbeat makes
it reachable again. The engine feeds the changes to the router, which then offers nothing to
that node's agents and redirects its ringing offers (local survivability).
"""

from __future__ import annotations

import attrs

from .._model import check_identifier
from .._validators import positive_seconds

__all__ = ["LinkMonitor", "NodeLinkChanged"]


@attrs.frozen
class NodeLinkChanged:
    """A node's link went down (`up` False) or came back, at `at`."""

    node: str
    up: bool
    at: float
    reason: str


class LinkMonitor:
    """Tracks heartbeats per node.

    Args:
        timeout: Seconds without a heartbeat after which a node is unreachable.
    """

    def __init__(self, timeout: float = 15.0) -> None:
        self._timeout = positive_seconds("timeout", timeout)
        self._last: dict[str, float] = {}
        self._down: set[str] = set()

    def __repr__(self) -> str:
        return f"<LinkMonitor nodes={len(self._last)} down={sorted(self._down)!r}>"

    def watch(self, node: str, now: float) -> None:
        """Start expecting heartbeats from `node` (counted as one received now)."""
        self._last[check_identifier("node", node)] = now

    def heartbeat(self, node: str, now: float) -> list[NodeLinkChanged]:
        """A heartbeat from `node`: it is reachable (again, if it was not)."""
        self._last[check_identifier("node", node)] = max(now, self._last.get(node, now))
        if node in self._down:
            self._down.discard(node)
            return [NodeLinkChanged(node, True, now, "heartbeat received")]
        return []

    def advance(self, now: float) -> list[NodeLinkChanged]:
        """Mark unreachable every node whose last heartbeat is `timeout` old."""
        changes = []
        for node, last in sorted(self._last.items()):
            if node not in self._down and now >= last + self._timeout:
                self._down.add(node)
                changes.append(
                    NodeLinkChanged(node, False, now, f"no heartbeat for {now - last:.0f} s")
                )
        return changes

    def next_deadline(self) -> float | None:
        """When the next node would be marked unreachable, or None."""
        times = [last + self._timeout for n, last in self._last.items() if n not in self._down]
        return min(times) if times else None

    def nodes(self) -> list[str]:
        """Every watched node, by name."""
        return sorted(self._last)

    def is_up(self, node: str) -> bool:
        """Whether `node` is reachable (a node never watched counts as reachable)."""
        return node not in self._down
