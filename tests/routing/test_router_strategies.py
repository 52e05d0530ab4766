"""How each strategy picks among eligible agents, and tier levels before any strategy."""

from __future__ import annotations

import pytest

from callresilience import Agent, InvalidInput
from callresilience.routing import OfferCall, QueueConfig, Router, RouterConfig, Strategy

from .conftest import call


def team(strategy: Strategy | str, levels: dict[str, int] | None = None, seed: int = 0) -> Router:
    """Three ready agents a, b, c (logged in in that order) in queue q."""
    r = Router(RouterConfig(queues=(QueueConfig("q", strategy=strategy),), seed=seed))
    for name in "abc":
        r.login(Agent(name, queues={"q": (levels or {}).get(name, 1)}), 0.0, ready=True)
    return r


def take(r: Router, call_id: str, now: float, talk: float = 1.0) -> str:
    """Route one call, accept it, talk `talk` seconds and end it; return who took it."""
    (offer,) = r.arrive(call(call_id, "q", now), now)
    assert isinstance(offer, OfferCall)
    r.accept(call_id, offer.agent_id, now)
    r.end(call_id, now + talk)
    return offer.agent_id


def test_longest_idle_picks_the_agent_whose_last_call_ended_first() -> None:
    """longest-idle (the default) serves agents in the order their last calls ended."""
    r = team(Strategy.LONGEST_IDLE)
    assert [take(r, f"c{n}", float(n * 10)) for n in range(4)] == ["a", "b", "c", "a"]


def test_longest_idle_prefers_the_agent_idle_longest_after_talk_times_differ() -> None:
    """An agent whose long call ended last waits behind agents who finished earlier."""
    r = team(Strategy.LONGEST_IDLE)
    take(r, "c1", 0.0, talk=100.0)  # a busy until 100
    take(r, "c2", 1.0, talk=1.0)  # b free at 2
    take(r, "c3", 3.0, talk=1.0)  # c free at 4
    assert take(r, "c4", 200.0) == "b"


def test_round_robin_rotates_in_offer_order() -> None:
    """round-robin offers to the agent offered a call least recently."""
    r = team(Strategy.ROUND_ROBIN)
    assert [take(r, f"c{n}", float(n)) for n in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_counts_offers_not_answers() -> None:
    """A rejected offer still moves the rotation on."""
    r = team(Strategy.ROUND_ROBIN)
    r.arrive(call("c1", "q", 0.0), 0.0)
    r.reject("c1", "a", 1.0)  # redirected to b
    assert r.call("c1").agent_id == "b"
    r.accept("c1", "b", 1.5)
    r.end("c1", 2.0)
    r.advance(10.0)  # a's pause is over
    assert take(r, "c2", 11.0) == "c"


def test_fewest_calls_picks_the_agent_with_fewest_answered() -> None:
    """fewest-calls serves the agent who answered the fewest calls."""
    r = team(Strategy.FEWEST_CALLS)
    take(r, "c1", 0.0)  # a: 1
    take(r, "c2", 1.0)  # b: 1
    take(r, "c3", 2.0)  # c: 1
    take(r, "c4", 3.0)  # a: 2
    assert take(r, "c5", 4.0) == "b"


def test_least_talk_time_picks_the_agent_with_least_talk() -> None:
    """least-talk-time serves the agent with the smallest total talk time."""
    r = team(Strategy.LEAST_TALK_TIME)
    take(r, "c1", 0.0, talk=50.0)  # a: 50
    take(r, "c2", 1.0, talk=5.0)  # b: 5
    take(r, "c3", 2.0, talk=20.0)  # c: 20
    assert take(r, "c4", 100.0) == "b"
    assert take(r, "c5", 101.0, talk=100.0) == "b"
    assert take(r, "c6", 300.0) == "c"


def test_random_is_repeatable_for_a_seed_and_uses_every_agent() -> None:
    """random picks from the seeded generator: the same seed gives the same picks."""
    first = team(Strategy.RANDOM, seed=7)
    second = team(Strategy.RANDOM, seed=7)
    picks = [take(first, f"c{n}", float(n)) for n in range(30)]
    assert picks == [take(second, f"c{n}", float(n)) for n in range(30)]
    assert set(picks) == {"a", "b", "c"}


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_serves_tier_level_one_first(strategy: Strategy) -> None:
    """Whatever the strategy, a level-2 agent gets a call only while level 1 is busy."""
    r = team(strategy, levels={"a": 2, "b": 1, "c": 2})
    (first,) = r.arrive(call("c1", "q", 0.0), 0.0)
    assert isinstance(first, OfferCall)
    assert first.agent_id == "b"
    (second,) = r.arrive(call("c2", "q", 0.0), 0.0)
    assert isinstance(second, OfferCall)
    assert second.agent_id in {"a", "c"}


def test_several_agents_freed_at_once_are_picked_by_the_strategy() -> None:
    """When a node comes back, the waiting call goes to the strategy's choice, not to luck."""
    r = Router(RouterConfig(queues=(QueueConfig("q", strategy=Strategy.FEWEST_CALLS),)))
    r.login(Agent("busy", queues=["q"], node="n1"), 0.0, ready=True)
    r.login(Agent("fresh", queues=["q"], node="n1"), 0.0, ready=True)
    take(r, "c1", 0.0)  # busy: 1 call
    r.node_down("n1", 5.0)
    r.arrive(call("c2", "q", 6.0), 6.0)
    assert r.node_up("n1", 7.0) == [OfferCall("c2", "fresh", 27.0, 1)]


def test_strategy_names_are_accepted_and_unknown_names_refused() -> None:
    """A strategy may be given by name; an unknown name is an error, not a silent default."""
    assert QueueConfig("q", strategy="round-robin").strategy is Strategy.ROUND_ROBIN
    with pytest.raises(InvalidInput, match="ring-all"):
        QueueConfig("q", strategy="ring-all")


def test_dead_pool_entries_are_compacted() -> None:
    """Agents going in and out of the pool many times do not grow the heaps without bound."""
    r = team(Strategy.RANDOM)
    for n in range(500):
        r.not_ready("a", float(n))
        r.ready("a", float(n))
    queue = r._queues["q"]
    assert sum(len(heap) for heap in queue.pools.values()) < 200
