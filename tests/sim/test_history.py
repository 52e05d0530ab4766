"""The simulator's history counts each offer's outcome from whichever event carries it."""

from __future__ import annotations

from callresilience import OfferOutcome
from callresilience.engine import OfferEnded
from callresilience.routing import CallOverflowed, CallRedirected, OverflowReason
from callresilience.sim._history import History


def test_a_rejected_offer_counts_whether_its_call_went_back_in_line_or_overflowed() -> None:
    """One rejection redirected the call, the next one ended it in overflow: two rejections."""
    history = History()
    history.arrived("c1", 0.0, outage=False)
    history.event(CallRedirected("c1", "ada", OfferOutcome.REJECTED))
    history.event(OfferEnded("c1", "ben", OfferOutcome.REJECTED))
    history.event(CallOverflowed("c1", OverflowReason.MAX_OFFERS, 12.0))
    call = history.calls["c1"]
    assert call.rejected == 2
    assert call.outcome == "overflowed"
    assert history.redirects == 1  # the call went back in line once


def test_an_offer_that_ended_otherwise_is_not_a_rejection() -> None:
    """An unreachable agent before the overflow is not counted as a rejection."""
    history = History()
    history.arrived("c1", 0.0, outage=False)
    history.event(OfferEnded("c1", "ada", OfferOutcome.UNREACHABLE))
    assert history.calls["c1"].rejected == 0
