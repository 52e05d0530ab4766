"""The router's own speed and memory: routing decisions per second and bytes per queued call.

Scenarios, each on one core with the router alone (no event loop, no I/O):

- **drain**: 10,000 calls wait; 1,000 agents become ready; then every offer is accepted and
  ended at once, so each end frees an agent who is offered the next waiting call. One
  decision = one offer; each costs an accept, an end and the offer itself.
- **arrivals**: agents wait idle; each arriving call is offered at once (call-side selection).
- **redirects**: every first offer is rejected and goes to the next agent.
- **scaling**: the drain with 100, 1,000 and 10,000 agents (five waiting calls per agent).
  Selection uses per-queue heaps, so the rate falls only with the heaps' depth and the length
  of the waiting line; a scan of every agent would fall 10x per step.
- **memory**: tracemalloc's count of bytes held per queued call, the Call object included.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
import uuid
from typing import Any

from callresilience import Agent, Call
from callresilience.routing import (
    OfferCall,
    QueueConfig,
    Router,
    RouterConfig,
    Strategy,
)

from ._common import table

TARGET_DECISIONS = 50_000
TARGET_BYTES = 1024


def _calls(count: int, queue: str = "q") -> list[Call]:
    return [Call(str(uuid.uuid4()), f"+1415555{n % 10_000:04d}", queue, 0.0) for n in range(count)]


def _router(strategy: Strategy, agents: int) -> Router:
    config = RouterConfig(
        queues=(QueueConfig("q", strategy=strategy),), reject_delay=0.0, wrap_up_time=0.0
    )
    router = Router(config)
    for n in range(agents):
        router.login(Agent(f"agent-{n}", queues={"q": 1 + n % 2}), 0.0)
    return router


def drain(strategy: Strategy, agents: int, calls: int) -> float:
    """Return offers per second while a backlog of `calls` drains through `agents`."""
    router = _router(strategy, agents)
    for call in _calls(calls):
        router.arrive(call, 0.0)
    offers: list[OfferCall] = []
    for n in range(agents):
        offers.extend(d for d in router.ready(f"agent-{n}", 0.0) if isinstance(d, OfferCall))
    gc.collect()
    made = 0
    now = 1.0
    started = time.perf_counter()
    while offers:
        offer = offers.pop()
        router.accept(offer.call_id, offer.agent_id, now)
        for decision in router.end(offer.call_id, now):
            if isinstance(decision, OfferCall):
                offers.append(decision)
                made += 1
        now += 1e-6
    elapsed = time.perf_counter() - started
    assert router.active_count == 0
    return made / elapsed


def arrivals(strategy: Strategy, agents: int, calls: int) -> float:
    """Return arrivals routed per second when idle agents wait for them."""
    router = _router(strategy, agents)
    for n in range(agents):
        router.ready(f"agent-{n}", 0.0)
    batch = _calls(calls)
    gc.collect()
    routed = 0
    now = 1.0
    started = time.perf_counter()
    for call in batch:
        (offer,) = router.arrive(call, now)
        assert isinstance(offer, OfferCall)
        routed += 1
        router.accept(offer.call_id, offer.agent_id, now)
        router.end(offer.call_id, now)
        now += 1e-6
    return routed / (time.perf_counter() - started)


def redirects(agents: int, calls: int) -> float:
    """Return redirects per second: every first offer is rejected and goes to the next agent."""
    router = _router(Strategy.LONGEST_IDLE, agents)
    for n in range(agents):
        router.ready(f"agent-{n}", 0.0)
    batch = _calls(calls)
    gc.collect()
    moved = 0
    now = 1.0
    started = time.perf_counter()
    for call in batch:
        (offer,) = router.arrive(call, now)
        assert isinstance(offer, OfferCall)
        for decision in router.reject(offer.call_id, offer.agent_id, now):
            if isinstance(decision, OfferCall):
                moved += 1
                router.accept(decision.call_id, decision.agent_id, now)
                router.end(decision.call_id, now)
        now += 1e-6
    return moved / (time.perf_counter() - started)


def bytes_per_queued_call(calls: int) -> float:
    """Return the bytes the router and the calls hold per queued call (tracemalloc)."""
    router = _router(Strategy.LONGEST_IDLE, 10)
    router.arrive(Call("warm-up", None, "q", 0.0), 0.0)  # queue structures exist already
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for call in _calls(calls):
        router.arrive(call, 0.0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert router.waiting_count == calls + 1
    return grown / calls


def _best(runs: int, measure: Any, *args: Any) -> float:
    """Best of `runs`: the least disturbed by the rest of the machine."""
    return max(measure(*args) for _ in range(runs))


def run(*, quick: bool) -> dict[str, Any]:
    """Run the router suite and print its table."""
    agents, calls, runs = (1_000, 10_000, 2) if quick else (1_000, 10_000, 5)
    results: dict[str, Any] = {"agents": agents, "queued_calls": calls}
    per_strategy = {
        strategy.value: round(_best(runs, drain, strategy, agents, calls)) for strategy in Strategy
    }
    results["drain_decisions_per_s"] = per_strategy
    results["decisions_per_s"] = per_strategy[Strategy.LONGEST_IDLE.value]
    results["arrivals_routed_per_s"] = round(
        _best(runs, arrivals, Strategy.LONGEST_IDLE, agents, calls)
    )
    results["redirects_per_s"] = round(_best(runs, redirects, agents, calls // 2))
    sizes = (100, 1_000, 10_000)
    # Enough waiting calls that each size has a backlog of 4 calls per agent to drain.
    scaling = {
        size: round(_best(runs, drain, Strategy.LONGEST_IDLE, size, 5 * size)) for size in sizes
    }
    results["scaling_decisions_per_s_by_agents"] = {str(k): v for k, v in scaling.items()}
    results["scaling_ratio_10000_vs_100_agents"] = round(scaling[10_000] / scaling[100], 2)
    results["bytes_per_queued_call"] = round(bytes_per_queued_call(calls))

    rows = [
        (f"drain, {name}", f"{rate:,}/s", f"aim >= {TARGET_DECISIONS:,}/s")
        for name, rate in per_strategy.items()
    ]
    rows += [
        ("arrivals routed at once", f"{results['arrivals_routed_per_s']:,}/s", ""),
        ("redirects after reject", f"{results['redirects_per_s']:,}/s", ""),
    ]
    rows += [(f"drain with {size:,} agents", f"{rate:,}/s", "") for size, rate in scaling.items()]
    rows += [
        (
            "ratio 10,000 vs 100 agents",
            f"{results['scaling_ratio_10000_vs_100_agents']}",
            "a scan of agents: ~0.01",
        ),
        (
            "bytes per queued call",
            f"{results['bytes_per_queued_call']:,} B",
            f"aim < {TARGET_BYTES} B",
        ),
    ]
    table(f"router: {agents:,} agents, {calls:,} queued calls, best of {runs}", rows)
    return results
