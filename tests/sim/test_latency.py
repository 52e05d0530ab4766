"""Offer latency in the summary counts the calls that found a free agent."""

from __future__ import annotations

from callresilience.sim._check import CheckResult
from callresilience.sim._history import CallHistory
from callresilience.sim._summary import summarize

NOTHING_WRONG = CheckResult(0, 0, 0, 0, 0, ())


def test_a_call_that_waited_for_an_agent_is_not_in_the_offer_latency() -> None:
    """Queued calls waited for an agent, not for ServiceNow: only the others are counted."""
    calls = [
        CallHistory("c1", arrived=10.0, outage=True, first_offer=10.002),
        CallHistory("c2", arrived=11.0, outage=True, first_offer=16.0, queued=True),
        CallHistory("c3", arrived=1.0, outage=False, first_offer=1.001),
    ]
    latency = summarize(calls, NOTHING_WRONG, dead_letters=0, drain_seconds=None)[
        "offer_latency_ms"
    ]
    assert latency["outage"]["max"] == 2.0
    assert latency["healthy"]["max"] == 1.0
