"""The engine process of the crash test: route scripted calls on a SQLite journal, or drain it.

Usage: ``python _crash_engine.py JOURNAL URL HISTORY SEED RUN [--drain] [--per-request N]``.

Makes calls arrive (seeded) for scripted agents who accept, reject or let offers ring out, on
the system clock, against the instance at URL. Each fact an adapter could act on is appended to
HISTORY only once the engine has journaled it, one line each, flushed and synced:
``accepted CALL`` after `Engine.accept` returned, ``ended CALL`` after `Engine.end` returned,
``missed CALL ATTEMPT`` when `OfferTimedOut` is published. Prints ``ready`` once routing starts;
the test kills it with SIGKILL at a moment of its choosing. With ``--drain`` it routes nothing,
waits until nothing is pending or in flight, prints ``done`` and exits 0. With
``--per-request N`` (N > 1) the drainer sends up to N entries a request through the Batch API,
from two slots, so that entries queue up behind the requests in flight and batches fill.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import attrs

from callresilience import Agent, Call, RouterConfig, SystemClock
from callresilience.engine import Engine, EngineConfig, EngineEvent, OfferTimedOut
from callresilience.journal import DrainerConfig, EntryState
from callresilience.resilience import BreakerConfig
from callresilience.servicenow import BasicAuth
from callresilience.testing import AgentAction, AgentBehaviour, Distribution, ScriptedAgents

AGENTS = 6
QUEUE = "support"
# The drainer refuses a lease shorter than settle + 10 s. The fake commits at once, so a short
# settle time is safe here; a short lease lets the restarted engine take over soon. A breaker
# that opens during a burst of refusals probes again after a second, not ten.
DRAINER = DrainerConfig(
    lease=12.0,
    settle=2.0,
    idle_poll=0.05,
    rate=100.0,
    concurrency=8,
    breaker=BreakerConfig(open_wait=1.0),
)
# Short offers and pauses, so that a few seconds hold accepted, rejected and missed offers.
ROUTER = RouterConfig(offer_timeout=0.8, reject_delay=0.2, no_answer_delay=0.2, max_no_answer=None)
BEHAVIOUR = AgentBehaviour(
    accept=0.85,
    reject=0.05,
    ring=Distribution.uniform(0.0, 0.1),
    talk=Distribution.uniform(0.05, 0.6),
    wrap_up=Distribution.fixed(0.0),
)


class History:
    """The append-only file of facts the adapter saw; each line is on disk when written."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *words: object) -> None:
        """Append one line."""
        os.write(self._fd, (" ".join(map(str, words)) + "\n").encode())
        os.fsync(self._fd)

    def agent_did(self, action: AgentAction) -> None:
        """Note an accept or an end: the agents report them once the engine call returned."""
        if action.kind == "accept":
            self.write("accepted", action.call_id)
        elif action.kind == "end":
            self.write("ended", action.call_id)

    def engine_said(self, event: EngineEvent) -> None:
        """Note a missed offer: the engine publishes it once its records are journaled."""
        if isinstance(event, OfferTimedOut):
            self.write("missed", event.call_id, event.attempt)


async def route(engine: Engine, rng: random.Random, run: str) -> None:
    """Log the agents in and make calls arrive until killed."""
    for n in range(AGENTS):
        agent = Agent(f"agent-{n}", queues=[QUEUE], user_sys_id=f"{n + 1:032x}")
        await engine.login(agent, ready=True)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        await engine.call_arrived(Call(f"r{run}-c{n:04d}", "+14155550100", QUEUE, engine.now()))
        await asyncio.sleep(rng.uniform(0.02, 0.12))


async def drain(engine: Engine) -> int:
    """Wait until the journal holds nothing pending or in flight."""
    print("ready", flush=True)
    engine.drainer.wake()
    while True:
        counts = await engine.journal.counts()
        if counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0:
            print("done", flush=True)
            return 0
        await asyncio.sleep(0.05)


async def main(args: list[str]) -> int:
    """Route until killed, or drain (the arguments are in the module's docstring)."""
    journal, url, history_path, seed, run = args[:5]
    flags = args[5:]
    drainer = DRAINER
    if "--per-request" in flags:
        per_request = int(flags[flags.index("--per-request") + 1])
        if per_request > 1:
            drainer = attrs.evolve(DRAINER, per_request=per_request, concurrency=2)
    config = EngineConfig(
        instance=url,
        auth=BasicAuth("sn", "pw"),
        journal=journal,
        router=ROUTER,
        drainer=drainer,
        read_timeout=5.0,
    )
    clock = SystemClock()
    history = History(history_path)
    agents = ScriptedAgents(clock, BEHAVIOUR, seed=int(seed), observer=history.agent_did)
    async with Engine(config, agents, clock=clock) as engine:
        if "--drain" in flags:
            return await drain(engine)
        agents.bind(engine)
        engine.subscribe(history.engine_said)
        await route(engine, random.Random(f"{seed}:{run}"), run)
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
