"""Every offer that ends reports its outcome once, also when its call overflows at that moment.

An offer ends accepted, rejected, unanswered, unreachable, cancelled or withdrawn. When the
call goes back in line, `CallRedirected` carries the outcome; when the same step makes the
call overflow (`max_offers` reached, `max_wait` over), `OfferEnded` carries it, just before
`CallOverflowed`. `callresilience_offers_total` counts each ended offer once, by outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callresilience import Agent, OfferOutcome, RouterConfig
from callresilience.engine import OfferEnded, OfferRejected, OfferTimedOut
from callresilience.journal import JournalStore, SqliteJournal
from callresilience.metrics import Metrics
from callresilience.routing import (
    CallAbandoned,
    CallOverflowed,
    CallRedirected,
    OverflowReason,
    QueueConfig,
)

from .conftest import ADA, BEN, Rig, build_rig, make_config

pytestmark = pytest.mark.anyio

OUTCOMES = [o.value for o in OfferOutcome]
REMOTE = Agent("rita", queues=["support"], node="site-b", user_sys_id="c" * 32)


@contextlib.asynccontextmanager
async def metered(
    *, agents: tuple[Agent, ...] = (ADA, BEN), store: JournalStore | None = None, **queue: Any
) -> AsyncIterator[tuple[Rig, Metrics]]:
    """A rig whose "support" queue has the given settings, its events counted by Metrics."""
    router = RouterConfig(
        offer_timeout=20,
        reject_delay=5,
        no_answer_delay=10,
        queues=[QueueConfig("support", **queue)],
    )
    async with build_rig(make_config(router=router), agents=agents, store=store) as rig:
        metrics = Metrics()
        metrics.attach(rig.engine)
        yield rig, metrics


def offers_total(metrics: Metrics) -> dict[str, float]:
    """`callresilience_offers_total` by outcome, leaving out the outcomes never counted."""
    counts = {
        outcome: metrics.registry.get_sample_value(
            "callresilience_offers_total", {"outcome": outcome}
        )
        for outcome in OUTCOMES
    }
    return {outcome: count for outcome, count in counts.items() if count}


def calls_total(metrics: Metrics, outcome: str) -> float:
    """`callresilience_calls_total` for one outcome."""
    value = metrics.registry.get_sample_value("callresilience_calls_total", {"outcome": outcome})
    return value or 0.0


def outcome_events(rig: Rig, call_id: str) -> list[Any]:
    """The call's events that carry an offer's outcome (`CallRedirected`, `OfferEnded`)."""
    return [
        e
        for e in rig.events
        if getattr(e, "call_id", None) == call_id
        and isinstance(getattr(e, "outcome", None), OfferOutcome)
    ]


def call_events(rig: Rig, call_id: str, *types: type) -> list[Any]:
    """The call's events of the given types, in the order they were published."""
    return [e for e in rig.events if isinstance(e, types) and e.call_id == call_id]


def assert_outcome_then_overflow(
    rig: Rig, call_id: str, agent_id: str, outcome: OfferOutcome, reason: OverflowReason
) -> None:
    """One outcome event for the offer, then the overflow, and nothing redirected."""
    events = call_events(rig, call_id, CallRedirected, OfferEnded, CallOverflowed)
    assert [type(e) for e in events] == [OfferEnded, CallOverflowed]
    assert events[0] == OfferEnded(call_id, agent_id, outcome)
    assert events[1].reason is reason
    assert outcome_events(rig, call_id) == [OfferEnded(call_id, agent_id, outcome)]


# -- max_offers --------------------------------------------------------------------------------


async def test_a_rejected_last_offer_reports_rejected_then_overflows() -> None:
    """The rejected offer was the last allowed: OfferRejected, OfferEnded, CallOverflowed."""
    async with metered(max_offers=1) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.engine.reject("c1", "ada", reason="busy")
        await rig.settle()
        assert rig.channel.offered_to("c1") == ["ada"]
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.REJECTED, OverflowReason.MAX_OFFERS
        )
        events = call_events(rig, "c1", OfferRejected, OfferEnded, CallOverflowed)
        assert [type(e) for e in events] == [OfferRejected, OfferEnded, CallOverflowed]
        assert offers_total(metrics) == {"rejected": 1}
        assert calls_total(metrics, "overflowed") == 1


async def test_a_last_offer_that_rings_out_reports_no_answer_then_overflows() -> None:
    """The engine's offer timeout on the last allowed offer: OfferTimedOut, OfferEnded."""
    async with metered(max_offers=1) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.advance(20.5)
        assert ("ada", "c1", OfferOutcome.NO_ANSWER) in rig.channel.withdrawn
        assert rig.channel.offered_to("c1") == ["ada"]
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.NO_ANSWER, OverflowReason.MAX_OFFERS
        )
        events = call_events(rig, "c1", OfferTimedOut, OfferEnded, CallOverflowed)
        assert [type(e) for e in events] == [OfferTimedOut, OfferEnded, CallOverflowed]
        assert offers_total(metrics) == {"no_answer": 1}
        assert calls_total(metrics, "overflowed") == 1


async def test_the_platforms_no_answer_on_the_last_offer_is_reported_too() -> None:
    """no_answer() from the platform on the last allowed offer: the same as the timeout."""
    async with metered(max_offers=1) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.engine.no_answer("c1", "ada")
        await rig.settle()
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.NO_ANSWER, OverflowReason.MAX_OFFERS
        )
        assert OfferTimedOut("c1", "ada", 1) in rig.events
        assert offers_total(metrics) == {"no_answer": 1}


async def test_an_unreachable_agent_on_the_last_offer_is_reported_then_overflows() -> None:
    """The channel fails to ring the agent of the last allowed offer."""
    async with metered(max_offers=1) as (rig, metrics):
        rig.channel.unreachable.add("ada")
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        assert rig.channel.offered_to("c1") == []
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.UNREACHABLE, OverflowReason.MAX_OFFERS
        )
        assert offers_total(metrics) == {"unreachable": 1}
        assert calls_total(metrics, "overflowed") == 1


async def test_two_unreachable_agents_one_redirect_then_the_overflow() -> None:
    """Two offers allowed, both unreachable: one redirect, then one overflow; two counted."""
    async with metered(max_offers=2) as (rig, metrics):
        rig.channel.unreachable.update({"ada", "ben"})
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        assert outcome_events(rig, "c1") == [
            CallRedirected("c1", "ada", OfferOutcome.UNREACHABLE),
            OfferEnded("c1", "ben", OfferOutcome.UNREACHABLE),
        ]
        assert isinstance(rig.events[-1], CallOverflowed)
        assert offers_total(metrics) == {"unreachable": 2}
        assert calls_total(metrics, "overflowed") == 1


@pytest.mark.parametrize("away", ["not_ready", "logout"])
async def test_a_cancelled_last_offer_is_reported_then_overflows(away: str) -> None:
    """The agent of the last allowed offer goes not ready or logs out while it rings."""
    async with metered(max_offers=1) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        await getattr(rig.engine, away)("ada")
        await rig.settle()
        assert ("ada", "c1", OfferOutcome.CANCELLED) in rig.channel.withdrawn
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.CANCELLED, OverflowReason.MAX_OFFERS
        )
        assert offers_total(metrics) == {"cancelled": 1}
        assert calls_total(metrics, "overflowed") == 1


async def test_a_lost_node_on_the_last_offer_is_reported_then_overflows() -> None:
    """The ringing agent's node misses its heartbeats: withdrawn as unreachable, overflowed."""
    async with metered(agents=(REMOTE,), max_offers=1) as (rig, metrics):
        rig.engine.watch_node("site-b")
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        assert rig.channel.offered_to("c1") == ["rita"]
        await rig.advance(16)  # node_timeout is 15 s, the offer rings for 20
        assert ("rita", "c1", OfferOutcome.UNREACHABLE) in rig.channel.withdrawn
        assert_outcome_then_overflow(
            rig, "c1", "rita", OfferOutcome.UNREACHABLE, OverflowReason.MAX_OFFERS
        )
        assert offers_total(metrics) == {"unreachable": 1}


# -- max_wait and max_wait_no_agent -------------------------------------------------------------


async def test_an_offer_ending_after_max_wait_is_reported_then_overflows() -> None:
    """The wait ran out while the offer rang; the cancelled offer ends it."""
    async with metered(max_wait=10) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.advance(12)
        assert call_events(rig, "c1", CallOverflowed) == []  # a ringing offer is never cut
        await rig.engine.not_ready("ada")
        await rig.settle()
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.CANCELLED, OverflowReason.MAX_WAIT
        )
        assert offers_total(metrics) == {"cancelled": 1}


async def test_an_offer_ringing_out_after_max_wait_is_reported_then_overflows() -> None:
    """The wait ran out while the offer rang; the offer then rings out."""
    async with metered(max_wait=10) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.advance(20.5)
        assert_outcome_then_overflow(
            rig, "c1", "ada", OfferOutcome.NO_ANSWER, OverflowReason.MAX_WAIT
        )
        assert offers_total(metrics) == {"no_answer": 1}


async def test_a_cancelled_offer_then_no_agent_reports_the_redirect_first() -> None:
    """The only agent logs out while ringing: the call goes back in line (CallRedirected),
    then overflows at the no-agent check; the offer is counted once."""
    async with metered(agents=(ADA,), max_wait_no_agent=5) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        await rig.engine.logout("ada")
        await rig.advance(10)
        events = call_events(rig, "c1", CallRedirected, OfferEnded, CallOverflowed)
        assert events[0] == CallRedirected("c1", "ada", OfferOutcome.CANCELLED)
        assert [type(e) for e in events] == [CallRedirected, CallOverflowed]
        assert events[1].reason is OverflowReason.NO_AGENT
        assert offers_total(metrics) == {"cancelled": 1}
        assert calls_total(metrics, "overflowed") == 1


# -- what is not an overflow ----------------------------------------------------------------------


async def test_a_hang_up_during_the_last_offer_abandons_and_does_not_overflow() -> None:
    """The caller hangs up while the last allowed offer rings: the offer is withdrawn and the
    call abandoned (CallAbandoned names the agent); it never overflows."""
    async with metered(max_offers=1) as (rig, metrics):
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.advance(3)
        await rig.engine.hangup("c1")
        await rig.settle()
        assert ("ada", "c1", OfferOutcome.WITHDRAWN) in rig.channel.withdrawn
        assert call_events(rig, "c1", CallOverflowed, OfferEnded, CallRedirected) == []
        assert call_events(rig, "c1", CallAbandoned) == [CallAbandoned("c1", 3.0, "ada")]
        assert offers_total(metrics) == {"withdrawn": 1}
        assert calls_total(metrics, "abandoned") == 1
        assert calls_total(metrics, "overflowed") == 0


async def test_a_redirected_offer_has_no_offer_ended() -> None:
    """Under the limit, the outcome comes once, in CallRedirected."""
    async with metered(max_offers=3) as (rig, metrics):
        rig.channel.unreachable.add("ada")
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        await rig.engine.reject("c1", "ben")
        await rig.settle()
        assert outcome_events(rig, "c1") == [
            CallRedirected("c1", "ada", OfferOutcome.UNREACHABLE),
            CallRedirected("c1", "ben", OfferOutcome.REJECTED),
        ]
        assert call_events(rig, "c1", CallOverflowed) == []
        assert offers_total(metrics) == {"unreachable": 1, "rejected": 1}


async def test_outcome_events_are_published_after_the_journal_append(tmp_path: Path) -> None:
    """A subscriber that sees OfferEnded or CallOverflowed finds the call's closing entries
    (the missed offer's work item, the closed Interaction) in the journal."""
    store = SqliteJournal(tmp_path / "j.db")  # appends wait for a grouped commit
    async with metered(store=store, max_offers=1) as (rig, _):
        rig.engine.drainer.hold({"default"})
        seen: list[tuple[str, list[str]]] = []
        reads: list[asyncio.Task[None]] = []

        async def read(name: str, call_id: str) -> None:
            seen.append((name, [e.key for e in await store.list(call_id=call_id)]))

        def on_event(event: object) -> None:
            if isinstance(event, OfferEnded | CallOverflowed):
                reads.append(asyncio.ensure_future(read(type(event).__name__, event.call_id)))

        rig.engine.subscribe(on_event)
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.engine.no_answer("c1", "ada")
        await asyncio.gather(*reads)
    assert [name for name, _ in seen] == ["OfferEnded", "CallOverflowed"]
    for _, keys in seen:
        assert {"c1:missed-1", "c1:closed"} <= set(keys)
