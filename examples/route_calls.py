"""A small contact center on virtual time: agents who accept, reject and miss calls.

Run it with ``python examples/route_calls.py [--calls N] [--seed S]``. Three scripted agents
answer a stream of calls: Ada accepts, Ben rejects one call in three, and Cy misses one in two
(the offer rings until it times out). The router decides every offer; this script plays the
agents and the clock, and prints what happened. It exits non-zero if any call was lost.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import Counter

import attrs

from callresilience import Agent, Call, RouterConfig
from callresilience.routing import (
    CallAbandoned,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    Decision,
    OfferCall,
    Router,
)

# How each agent answers an offer: "accept", "reject" or "miss" (let it ring out).
BEHAVIOUR = {"ada": (1.0, 0.0), "ben": (0.67, 0.33), "cy": (0.5, 0.0)}


def answer(agent_id: str, rng: random.Random) -> str:
    """Decide what a scripted agent does with an offer."""
    accept, reject = BEHAVIOUR[agent_id]
    roll = rng.random()
    if roll < accept:
        return "accept"
    return "reject" if roll < accept + reject else "miss"


def _plain(value: object) -> object:
    """Show floats to a tenth and enums by their value."""
    if isinstance(value, float):
        return round(value, 1)
    return getattr(value, "value", value)


def main(argv: list[str] | None = None) -> int:
    """Run the scripted contact center and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    router = Router(RouterConfig(offer_timeout=15, reject_delay=3, no_answer_delay=10))
    for name in BEHAVIOUR:
        router.login(Agent(name, queues=["support"]), 0.0, ready=True)

    # Scripted future events: (time, order, kind, call id, agent id).
    events: list[tuple[float, int, str, str, str]] = []
    order = 0

    def later(time: float, kind: str, call_id: str, agent_id: str = "") -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (time, order, kind, call_id, agent_id))

    for n in range(args.calls):
        later(n * 4.0, "arrive", f"call-{n:03d}")

    outcome: Counter[str] = Counter()

    def show(now: float, decisions: list[Decision]) -> None:
        for decision in decisions:
            fields = ", ".join(
                f"{key}={_plain(value)}"
                for key, value in attrs.asdict(decision, recurse=False).items()
            )
            print(f"{now:7.1f}s  {type(decision).__name__:<15} {fields}")
            if isinstance(decision, OfferCall):
                what = answer(decision.agent_id, rng)
                if what != "miss":  # a missed offer is left to the router's timer
                    later(now + rng.uniform(1, 4), what, decision.call_id, decision.agent_id)
            elif isinstance(decision, CallRedirected):
                outcome[f"redirected after {decision.outcome.value}"] += 1
            elif isinstance(decision, CallEnded | CallAbandoned | CallOverflowed):
                outcome[type(decision).__name__] += 1

    now = 0.0
    while events or router.next_deadline() is not None:
        deadline = router.next_deadline()
        if events and (deadline is None or events[0][0] < deadline):
            now, _, kind, call_id, agent_id = heapq.heappop(events)
            show(now, router.advance(now))
            if kind == "arrive":
                show(now, router.arrive(Call(call_id, "+14155550100", "support", now), now))
            elif kind == "accept":
                show(now, router.accept(call_id, agent_id, now))
                later(now + rng.uniform(20, 60), "end", call_id, agent_id)
            elif kind == "reject":
                show(now, router.reject(call_id, agent_id, now))
            else:
                show(now, router.end(call_id, now))
        else:
            now = deadline or now
            show(now, router.advance(now))

    print("\nsummary:", dict(sorted(outcome.items())))
    lost = args.calls - outcome["CallEnded"] - outcome["CallAbandoned"] - outcome["CallOverflowed"]
    print(f"calls: {args.calls}, answered: {outcome['CallEnded']}, lost: {lost}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
