"""What the run looked like at one moment: one sample per tick, for the dashboard and report."""

from __future__ import annotations

import attrs

__all__ = ["Note", "Sample"]


@attrs.frozen
class Sample:
    """The state of the run `t` seconds in.

    Attributes:
        t: Seconds into the run (virtual).
        phase: ``"calls arriving"``, ``"winding down"``, ``"draining"`` or ``"done"``.
        arrived: Calls so far.
        waiting: Calls queued, not ringing.
        ringing: Calls being offered.
        connected: Calls in progress.
        offers: Offers so far.
        redirects: Offers that ended without an accept (rejected, rang out...).
        rejected: Offers an agent rejected.
        timed_out: Offers that rang out.
        answered: Calls an agent took so far.
        abandoned: Callers who hung up before an agent took the call.
        overflowed: Calls that left the queue without an agent.
        agents: Agents by state (``idle``, ``reserved``, ``on_call``, ``wrap_up``,
            ``not_ready``...).
        faults: The scheduled faults in force (empty: healthy).
        breaker: The drainer's breaker: ``closed``, ``open`` or ``half_open``.
        modes: Each scope's mode.
        depth: Journal entries pending or in flight.
        dead: Dead journal entries.
        phone_logs: Phone logs on the instance.
        interactions: Interactions on the instance.
        work_items: Work items on the instance.
    """

    t: float
    phase: str
    arrived: int
    waiting: int
    ringing: int
    connected: int
    offers: int
    redirects: int
    rejected: int
    timed_out: int
    answered: int
    abandoned: int
    overflowed: int
    agents: dict[str, int]
    faults: tuple[str, ...]
    breaker: str
    modes: dict[str, str]
    depth: int
    dead: int
    phone_logs: int
    interactions: int
    work_items: int

    @property
    def records(self) -> int:
        """Records of every kind on the instance."""
        return self.phone_logs + self.interactions + self.work_items

    @property
    def resiliency(self) -> bool:
        """Whether any scope is in resiliency mode."""
        return any(mode == "resiliency" for mode in self.modes.values())


@attrs.frozen
class Note:
    """Something worth a line of its own: a fault starting, the breaker, a mode switch."""

    t: float
    text: str
