"""What happened to each call of a run, told by the engine's events and the agents. Pure.

The history is the simulator's own account, kept apart from the engine's counters: the
checker compares it with the fake's tables.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..engine import CallOffered, OfferEnded, OfferTimedOut
from ..routing import (
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    OfferOutcome,
)

__all__ = ["CallHistory", "History"]


@attrs.define
class CallHistory:
    """One call's life.

    Attributes:
        call_id: The call.
        arrived: When it arrived (seconds into the run).
        outage: Whether the instance was scheduled to be unavailable when it arrived.
        first_offer: When the agents' channel was first called for it.
        offers: How many offers it got.
        rejected: Offers an agent rejected.
        missed: The attempts whose offer rang out.
        agent_id: Who answered it.
        outcome: ``"ended"``, ``"abandoned"``, ``"overflowed"``, or None while active.
        queued: Whether it found no free agent on arrival and waited in line.
    """

    call_id: str
    arrived: float
    outage: bool
    first_offer: float | None = None
    offers: int = 0
    rejected: int = 0
    missed: list[int] = attrs.field(factory=list)
    agent_id: str | None = None
    outcome: str | None = None
    queued: bool = False

    @property
    def answered(self) -> bool:
        """Whether an agent took the call."""
        return self.agent_id is not None

    @property
    def needs_interaction(self) -> bool:
        """Whether ServiceNow must hold an Interaction for it."""
        return self.answered or bool(self.missed)

    @property
    def offer_latency(self) -> float | None:
        """Seconds from arrival to the first offer reaching the channel."""
        return None if self.first_offer is None else self.first_offer - self.arrived


class History:
    """Every call of a run, fed by `arrived`, `channel_called` and `event`."""

    def __init__(self) -> None:
        self.calls: dict[str, CallHistory] = {}
        self.offers = 0
        self.redirects = 0

    def arrived(self, call_id: str, at: float, *, outage: bool) -> None:
        """A call arrived at `at`."""
        self.calls[call_id] = CallHistory(call_id, at, outage)

    def channel_called(self, call_id: str, at: float) -> None:
        """The agents' channel was asked to ring for `call_id` at `at`."""
        call = self.calls.get(call_id)
        if call is not None and call.first_offer is None:
            call.first_offer = at

    def event(self, event: Any) -> None:
        """Take in one engine event."""
        call = self.calls.get(getattr(event, "call_id", ""))
        if call is None:
            return
        if isinstance(event, CallOffered):
            call.offers += 1
            self.offers += 1
        elif isinstance(event, CallConnected):
            call.agent_id = event.agent_id
        elif isinstance(event, CallRedirected):
            self.redirects += 1
            if event.outcome is OfferOutcome.REJECTED:
                call.rejected += 1
        elif isinstance(event, OfferEnded):  # the offer's call overflowed instead
            if event.outcome is OfferOutcome.REJECTED:
                call.rejected += 1
        elif isinstance(event, OfferTimedOut):
            call.missed.append(event.attempt)
        elif isinstance(event, CallEnded):
            call.outcome = "ended"
        elif isinstance(event, CallAbandoned):
            call.outcome = "abandoned"
        elif isinstance(event, CallOverflowed):
            call.outcome = "overflowed"

    @property
    def active(self) -> int:
        """Calls not finished yet."""
        return sum(1 for c in self.calls.values() if c.outcome is None)

    def count(self, outcome: str) -> int:
        """Calls that finished with `outcome`."""
        return sum(1 for c in self.calls.values() if c.outcome == outcome)

    @property
    def answered(self) -> int:
        """Calls an agent took."""
        return sum(1 for c in self.calls.values() if c.answered)
