"""Scripted agents accept, reject and miss calls while ServiceNow is down, then it recovers.

Run it with ``python examples/agents_accept_reject.py [--calls N] [--seed S]``. It runs an
`Engine` on virtual time (a `ManualClock`) against a FakeServiceNow in this process, and the
instance refuses every connection from t=20 s to t=100 s. Three agents answer: Ada accepts,
Ben rejects one offer in three, Cy lets one in two ring out (set not ready after three misses
in a row, Cy is back half a minute later). One caller in ten hangs up while waiting. Every
call is still offered at once, and when the instance is back each call's records are created
exactly once. The script checks the fake's tables itself and exits 1 if any record is missing
or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from callresilience import Agent, Call, OfferOutcome, RouterConfig, RoutingError
from callresilience.engine import (
    CallOffered,
    Engine,
    EngineConfig,
    InteractionCreated,
    Notice,
    Offer,
    OfferTimedOut,
)
from callresilience.journal import DrainerConfig, EntryState, RecordDead, RecordWritten
from callresilience.resilience import BreakerConfig, BreakerStateChanged
from callresilience.routing import (
    AgentNotReady,
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallRedirected,
    CallState,
)
from callresilience.servicenow import BasicAuth
from callresilience.testing import FakeServiceNow, ManualClock, RefuseConnections

LOG, INTERACTION, WORK_ITEM = "sn_openframe_phone_log", "interaction", "awa_work_item"
OUTAGE = (20.0, 100.0)  # virtual seconds: the instance refuses connections in between
# How each agent answers an offer: (chance to accept, chance to reject); the rest ring out.
BEHAVIOUR = {"ada": (1.0, 0.0), "ben": (0.67, 0.33), "cy": (0.5, 0.0)}
SYS_IDS = {"ada": "a" * 32, "ben": "b" * 32, "cy": "c" * 32}


class Script:
    """Future actions on virtual time, run in order by the main loop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], Awaitable[None]]]] = []
        self._order = itertools.count()

    def at(self, when: float, action: Callable[[], Awaitable[None]]) -> None:
        heapq.heappush(self._heap, (when, next(self._order), action))

    def due(self, now: float) -> list[Callable[[], Awaitable[None]]]:
        actions = []
        while self._heap and self._heap[0][0] <= now:
            actions.append(heapq.heappop(self._heap)[2])
        return actions

    def __len__(self) -> int:
        return len(self._heap)


class ScriptedAgents:
    """An `AgentChannel` whose agents answer by script, a few virtual seconds later."""

    def __init__(self, clock: ManualClock, script: Script, rng: random.Random) -> None:
        self.clock, self.script, self.rng = clock, script, rng
        self.engine: Engine | None = None

    async def offer(self, agent: Agent, offer: Offer) -> None:
        accept, reject = BEHAVIOUR[agent.agent_id]
        roll, call_id = self.rng.random(), offer.call.call_id
        later = self.clock.now() + self.rng.uniform(1.0, 6.0)
        if roll < accept:
            self.script.at(later, lambda: self._answer("accept", call_id, agent.agent_id))
        elif roll < accept + reject:
            self.script.at(later, lambda: self._answer("reject", call_id, agent.agent_id))
        # else: the agent is away from the desk and the offer rings out

    async def _answer(self, what: str, call_id: str, agent_id: str) -> None:
        engine = self.engine
        assert engine is not None
        try:
            if what == "reject":
                await engine.reject(call_id, agent_id, reason="busy")
                return
            await engine.accept(call_id, agent_id)
        except RoutingError as error:  # the caller hung up meanwhile
            say(self.clock, f"{agent_id} {what}s {call_id}: too late ({type(error).__name__})")
            return
        talk = self.rng.uniform(20.0, 60.0)
        self.script.at(self.clock.now() + talk, lambda: engine.end(call_id))

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        pass  # the platform stops ringing; the engine already printed why

    async def notify(self, agent: Agent, notice: Notice) -> None:
        say(self.clock, f"notice for {agent.agent_id}: {notice.text}")

    async def transfer(self, agent: Agent, call_id: str, target: str, sys_id: str) -> None:
        raise NotImplementedError("no transfers in this script")


def say(clock: ManualClock, text: str) -> None:
    print(f"[{clock.now():7.1f}s] {text}")


def describe(event: Any) -> str | None:
    """One timeline line per event worth showing, or None."""
    match event:
        case CallOffered(call_id=c, agent_id=a, attempt=n):
            return f"{c} offered to {a} (attempt {n})"
        case CallConnected(call_id=c, agent_id=a):
            return f"{c} accepted by {a}: connected"
        case CallRedirected(call_id=c, agent_id=a, outcome=o) if o is not OfferOutcome.NO_ANSWER:
            return f"{c} {o.value} by {a}: redirected"
        case OfferTimedOut(call_id=c, agent_id=a, attempt=n):
            return f"{c} rang out at {a} (attempt {n}): redirected, miss journaled"
        case CallAbandoned(call_id=c):
            return f"{c} abandoned: the caller hung up"
        case CallEnded(call_id=c, talk_time=t):
            return f"{c} ended after {t:.0f}s"
        case InteractionCreated(call_id=c):
            return f"{c} Interaction created"
        case RecordWritten(call_id=c, name=name, kind="create") if name != INTERACTION:
            return f"{c} {name} created"
        case RecordDead(call_id=c, key=k, reason=r):
            return f"{c} entry {k} DEAD: {r}"
        case AgentNotReady(agent_id=a, reason=why):
            return f"{a} set not ready ({why})"
        case BreakerStateChanged(new=state, reason=why):
            return f"breaker {state.value}: {why}"
    return None


def check(
    fake: FakeServiceNow, calls: list[str], answered: set[str], missed: Counter[str]
) -> tuple[list[str], int, int]:
    """Compare the fake's tables with what each call must have: (report lines, dup, lost)."""
    lines: list[str] = []
    duplicates = lost = 0
    for call_id in calls:
        expected = {
            LOG: 1 if call_id in answered else 0,
            INTERACTION: 1 if call_id in answered or missed[call_id] else 0,
        }
        found = {
            LOG: [r for r in fake.records(LOG) if r["call_id"] == call_id],
            INTERACTION: [r for r in fake.records(INTERACTION) if r["correlation_id"] == call_id],
        }
        items = [
            r
            for r in fake.records(WORK_ITEM)
            if r["correlation_id"].startswith(f"{call_id}:missed-")
        ]
        keys = Counter(r["correlation_id"] for r in items)
        for table, want in expected.items():
            duplicates += max(0, len(found[table]) - want)
            lost += max(0, want - len(found[table]))
        duplicates += sum(n - 1 for n in keys.values())
        lost += missed[call_id] - len(keys)
        parts = []
        if found[LOG]:
            parts.append(f"phone log ({found[LOG][0]['duration']}s)")
        if found[INTERACTION]:
            record = found[INTERACTION][0]
            parts.append(f"Interaction {record['number']} {record['state']}")
            if found[LOG] and record["channel_metadata_document"] != found[LOG][0]["sys_id"]:
                lost += 1
                parts.append("NOT LINKED")
            closed = "closed_complete" if call_id in answered else "closed_abandoned"
            if record["state"] != closed:  # the closing update is missing
                lost += 1
                parts.append(f"NOT {closed}")
        if items:
            parts.append(f"{len(items)} missed-offer work item{'s' * (len(items) > 1)}")
        lines.append(
            f"  {call_id}: {', '.join(parts) or 'no records (nobody answered, no offer rang out)'}"
        )
    return lines, duplicates, lost


async def run(calls: int, seed: int) -> int:
    rng = random.Random(seed)
    clock = ManualClock()
    # The fake instance checks these credentials like a real one would.
    fake = FakeServiceNow(clock=clock, seed=seed, user="integration", password="secret")  # noqa: S106
    fake.faults.add(RefuseConnections(), start=OUTAGE[0], duration=OUTAGE[1] - OUTAGE[0])
    config = EngineConfig(
        "https://example.service-now.com",
        auth=BasicAuth("integration", "secret"),
        journal=None,
        router=RouterConfig(offer_timeout=15, reject_delay=3, no_answer_delay=10, seed=seed),
        drainer=DrainerConfig(breaker=BreakerConfig(minimum_calls=3, window=6, probes=1)),
    )
    script = Script()
    agents = ScriptedAgents(clock, script, rng)
    engine = Engine(config, agents, clock=clock, transport=fake.transport())
    agents.engine = engine
    call_ids = [f"call-{n:03d}" for n in range(calls)]
    answered: set[str] = set()
    missed: Counter[str] = Counter()
    finished: set[str] = set()

    def watch(event: Any) -> None:
        line = describe(event)
        if line:
            say(clock, line)
        if isinstance(event, CallConnected):
            answered.add(event.call_id)
        elif isinstance(event, OfferTimedOut):
            missed[event.call_id] += 1
        elif isinstance(event, CallEnded | CallAbandoned):
            finished.add(event.call_id)
        elif isinstance(event, AgentNotReady):  # back at the desk half a minute later
            script.at(clock.now() + 30, partial(back, event.agent_id))

    async def back(agent_id: str) -> None:
        say(clock, f"{agent_id} is back and ready")
        await engine.ready(agent_id)

    engine.subscribe(watch)
    arrival = 0.0
    for call_id in call_ids:
        arrival += rng.uniform(2.0, 10.0)
        call = Call(call_id, "+14155550100", "support", arrival)
        script.at(arrival, partial(engine.call_arrived, call))
        if rng.random() < 0.1:  # this caller gives up after a while
            give_up = arrival + rng.uniform(5.0, 40.0)
            script.at(give_up, partial(hang_up, engine, call_id))

    say(clock, f"instance down from {OUTAGE[0]:.0f}s to {OUTAGE[1]:.0f}s")
    async with engine:
        for agent_id, sys_id in SYS_IDS.items():
            await engine.login(Agent(agent_id, queues=["support"], user_sys_id=sys_id), ready=True)
        while len(script) or len(finished) < calls or not await drained(engine):
            for action in script.due(clock.now()):
                await action()
            for _ in range(50):  # let every task due at this instant run
                await asyncio.sleep(0)
            clock.advance(0.5)
            if clock.now() > 3600:
                say(clock, "gave up waiting for the journal to drain")
                break
        say(clock, "done")

    lines, duplicates, lost = check(fake, call_ids, answered, missed)
    print("\nRecords per call:")
    print("\n".join(lines))
    totals = {t: len(fake.records(t)) for t in (LOG, INTERACTION, WORK_ITEM)}
    print(
        f"\ncalls: {calls}, answered: {len(answered)}, records: {totals[LOG]} phone logs, "
        f"{totals[INTERACTION]} Interactions, {totals[WORK_ITEM]} work items, "
        f"duplicates: {duplicates}, lost: {lost}"
    )
    return 1 if duplicates or lost else 0


async def hang_up(engine: Engine, call_id: str) -> None:
    """The caller hangs up if still waiting or ringing (not once an agent answered)."""
    try:
        if engine.router.call(call_id).state in {CallState.QUEUED, CallState.OFFERED}:
            await engine.hangup(call_id)
    except RoutingError:
        pass  # the call is over already


async def drained(engine: Engine) -> bool:
    counts = await engine.journal.counts()
    return counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0


def main(argv: list[str] | None = None) -> int:
    """Run the script and return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=12, help="how many calls (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the agents' behaviour")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.calls, args.seed))


if __name__ == "__main__":
    sys.exit(main())
