"""A regional carrier outage: EMEA switches to resiliency mode while AMER carries on.

Run it with ``python examples/regional_outage.py [--json]``. It runs an `Engine` on virtual
time (a `ManualClock`) against a FakeServiceNow in this process; the instance stays healthy
throughout. Five agents work in two scopes: anna, bruno and carla in ``region:emea``, dave
and erin in ``region:amer``. At t=20 s the adapter reports that the EMEA carrier is down:

- an incident opens at once; ten seconds later (``ModeConfig.enter_after``) the EMEA scope
  switches to resiliency mode, and AMER does not;
- anna, who is idle, is told at once; bruno, on a call, only when his call ends; carla, on a
  break, never acknowledges, and her notice is sent again as forced after
  ``notice_deadline``;
- calls keep flowing in both regions. AMER's records are written as they happen; EMEA's wait
  in the journal, and anna's attempt to open an Interaction (to transfer) fails at once;
- at t=90 s the carrier is back; thirty seconds later (``ModeConfig.leave_after``) EMEA is
  back to normal mode, its agents are told, and its held records are written.

At the end the script checks the fake's tables (each call has one phone log and one
Interaction, linked and closed) and prints a summary of `Engine.status()`; it exits 1 if a
record is missing or duplicated. ``--json`` also prints the whole status snapshot taken at
t=68 s, in the middle of the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from callresilience import (
    Agent,
    Call,
    ComponentStatus,
    Engine,
    EngineConfig,
    InteractionRequired,
    ItsmUnavailable,
    ModeConfig,
    Notice,
    Offer,
    OfferOutcome,
    RouterConfig,
)
from callresilience.engine import CallOffered, InteractionCreated
from callresilience.health import IncidentChanged, ModeChanged
from callresilience.journal import EntryState
from callresilience.routing import CallConnected, CallEnded
from callresilience.servicenow import BasicAuth
from callresilience.testing import FakeServiceNow, ManualClock

LOG, INTERACTION = "sn_openframe_phone_log", "interaction"
EMEA, AMER = "region:emea", "region:amer"
CARRIER = "carrier-emea"
AGENTS = {
    "anna": (EMEA, "1" * 32),
    "bruno": (EMEA, "2" * 32),
    "carla": (EMEA, "3" * 32),
    "dave": (AMER, "4" * 32),
    "erin": (AMER, "5" * 32),
}
# call id -> (arrives at, talk time): EMEA calls wait in the "emea" queue, AMER in "amer".
CALLS = {
    "emea-1": (5.0, 60.0),
    "amer-1": (12.0, 30.0),
    "emea-2": (35.0, 40.0),
    "amer-2": (40.0, 30.0),
    "emea-3": (85.0, 20.0),
    "amer-3": (95.0, 25.0),
    "emea-4": (130.0, 15.0),
}
SNAPSHOT_AT = 68.0  # when the status snapshot for --json is taken
GIVE_UP_AT = 600.0  # the scenario is over by t=150 s; this only stops a broken run

Action = Callable[[], Awaitable[None]]


class Plan:
    """What happens when, on virtual time: actions grouped by the time they are due."""

    def __init__(self) -> None:
        self._due: defaultdict[float, list[Action]] = defaultdict(list)

    def at(self, when: float, action: Action) -> None:
        self._due[when].append(action)

    def take(self, now: float) -> list[Action]:
        """Remove and return every action due at or before `now`, earliest first."""
        times = sorted(t for t in self._due if t <= now)
        return [action for t in times for action in self._due.pop(t)]

    async def play(self, clock: ManualClock, *, until: Callable[[], Awaitable[bool]]) -> bool:
        """Run what is due as virtual time moves on, half a second a step.

        Stops once every action has run and `until()` says the scenario is over; returns False
        if that has not happened by `GIVE_UP_AT`.
        """
        while self._due or not await until():
            for action in self.take(clock.now()):
                await action()
            for _ in range(50):  # let every task due at this instant run
                await asyncio.sleep(0)
            if clock.now() >= GIVE_UP_AT:
                return False
            clock.advance(0.5)
        return True


class Desks:
    """The `AgentChannel`: the agents' desktops, answering by script.

    Every agent accepts an offer two seconds after it rings and talks for the call's talk
    time. Every agent acknowledges a notice three seconds after it appears, except an agent on
    a break, who does not read notices at all.
    """

    def __init__(self, clock: ManualClock, plan: Plan) -> None:
        self.clock, self.plan = clock, plan
        self.on_break: set[str] = set()
        self.engine: Engine | None = None

    def _engine(self) -> Engine:
        assert self.engine is not None, "set Desks.engine before the first call"
        return self.engine

    async def offer(self, agent: Agent, offer: Offer) -> None:
        call_id, agent_id = offer.call.call_id, agent.agent_id
        self.plan.at(self.clock.now() + 2, partial(self._accept, call_id, agent_id))

    async def _accept(self, call_id: str, agent_id: str) -> None:
        engine = self._engine()
        await engine.accept(call_id, agent_id)
        self.plan.at(self.clock.now() + CALLS[call_id][1], partial(engine.end, call_id))

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        say(self.clock, f"stop ringing {agent.agent_id} for {call_id} ({reason.value})")

    async def notify(self, agent: Agent, notice: Notice) -> None:
        agent_id = agent.agent_id
        if notice.kind != "mode":
            say(self.clock, f"message to {agent_id}: {notice.text}")
            return
        number = notice.data["notice_id"]
        say(self.clock, f"notice {number} to {agent_id}: {notice.text}")
        if notice.data["forced"]:
            # The agent did not acknowledge in time: the adapter switches the desktop itself.
            say(self.clock, f"{agent_id}'s desktop switched to {notice.data['mode']} mode")
        elif agent_id not in self.on_break:
            self.plan.at(self.clock.now() + 3, partial(self._acknowledge, agent_id, number))

    async def _acknowledge(self, agent_id: str, notice_id: int) -> None:
        await self._engine().acknowledge(agent_id, notice_id)
        say(self.clock, f"{agent_id} acknowledges notice {notice_id}")

    async def transfer(self, agent: Agent, call_id: str, target: str, sys_id: str) -> None:
        say(self.clock, f"{agent.agent_id} transfers {call_id} to {target} (Interaction {sys_id})")


def say(clock: ManualClock, text: str) -> None:
    print(f"[{clock.now():6.1f}s] {text}")


def describe(event: Any) -> str | None:
    """One timeline line per engine event worth showing, or None."""
    match event:
        case CallOffered(call_id=c, agent_id=a):
            return f"{c} offered to {a}"
        case CallConnected(call_id=c, agent_id=a):
            return f"{c} connected to {a}"
        case CallEnded(call_id=c, agent_id=a, talk_time=t):
            return f"{c} ended ({a} talked {t:.0f} s)"
        case InteractionCreated(call_id=c):
            return f"{c}: Interaction created on the instance"
        case ModeChanged(scope=s, old=old, new=new, reason=why):
            return f"MODE {s}: {old.value} -> {new.value} ({why})"
        case IncidentChanged(incident=i, change=change):
            scopes = ", ".join(sorted(i.scopes)) or "every scope"
            return f"INCIDENT #{i.incident_id} {change}: {i.title} ({i.severity.value}; {scopes})"
    return None


def check(fake: FakeServiceNow) -> tuple[list[str], int, int]:
    """Each call's records on the fake: (report lines, duplicates, missing)."""
    lines: list[str] = []
    duplicates = missing = 0
    for call_id in CALLS:
        logs = [r for r in fake.records(LOG) if r["call_id"] == call_id]
        interactions = [r for r in fake.records(INTERACTION) if r["correlation_id"] == call_id]
        for found in (logs, interactions):
            duplicates += max(0, len(found) - 1)
            missing += 1 - min(1, len(found))
        if not (logs and interactions):
            lines.append(
                f"  {call_id}: MISSING ({len(logs)} phone logs, {len(interactions)} Interactions)"
            )
            continue
        log, interaction = logs[0], interactions[0]
        linked = interaction["channel_metadata_document"] == log["sys_id"]
        if not linked or interaction["state"] != "closed_complete":
            missing += 1  # the link or the closing update was not written
        lines.append(
            f"  {call_id}: Interaction {interaction['number']} {interaction['state']}, "
            f"phone log {log['duration']} s, linked: {linked}"
        )
    return lines, duplicates, missing


def summary(status: dict[str, Any]) -> list[str]:
    """The status snapshot, a few lines long."""
    incidents = status["incidents"]
    journal = status["journal"]
    servicenow = status["servicenow"]
    resolved = "; ".join(f"#{i['id']} {i['title']}, {i['severity']}" for i in incidents["resolved"])
    breakers = ", ".join(f"{url} {state}" for url, state in servicenow["breakers"].items())
    return [
        "  modes: " + ", ".join(f"{s} {m}" for s, m in status["modes"].items()),
        "  components: " + ", ".join(f"{n} {c['status']}" for n, c in status["components"].items()),
        f"  incidents: {len(incidents['open'])} open, {len(incidents['resolved'])} resolved"
        + (f" ({resolved})" if resolved else ""),
        "  agents: " + ", ".join(f"{n} {state}" for state, n in status["agents"].items()),
        f"  notices outstanding: {len(status['notices'])}",
        f"  journal: depth {journal['depth']}, done {journal['done']}, dead {journal['dead']}, "
        f"held groups: {', '.join(journal['held_groups']) or 'none'}",
        f"  breakers: {breakers}",
    ]


async def try_transfer(engine: Engine, clock: ManualClock, call_id: str, target: str) -> None:
    """What an agent's transfer button does: open the Interaction if needed, then transfer."""
    try:
        await engine.transfer(call_id, target)
        return
    except InteractionRequired:
        say(clock, f"{call_id}: no Interaction yet; opening one to transfer")
    try:
        sys_id = await engine.open_interaction(call_id)
    except ItsmUnavailable as error:
        say(clock, f"{call_id}: open_interaction raised ItsmUnavailable: {error}")
        say(clock, f"{call_id}: transfer on the phone system instead")
        return
    say(clock, f"{call_id}: Interaction {sys_id} opened")
    await engine.transfer(call_id, target)


async def drained(engine: Engine) -> bool:
    counts = await engine.journal.counts()
    return counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0


async def run(show_json: bool) -> int:
    clock = ManualClock()
    # The fake instance checks these credentials like a real one would.
    fake = FakeServiceNow(clock=clock, user="integration", password="secret")  # noqa: S106
    config = EngineConfig(
        "https://example.service-now.com",
        auth=BasicAuth("integration", "secret"),
        journal=None,
        router=RouterConfig(offer_timeout=15),
        modes=ModeConfig(enter_after=10, leave_after=30),
        notice_deadline=30,
    )
    plan = Plan()
    desks = Desks(clock, plan)
    engine = Engine(config, desks, clock=clock, transport=fake.transport())
    desks.engine = engine
    finished: set[str] = set()
    snapshot: dict[str, Any] = {}

    def timeline(event: Any) -> None:
        if isinstance(event, CallEnded):
            finished.add(event.call_id)
        if line := describe(event):
            say(clock, line)

    engine.subscribe(timeline)

    def agent(agent_id: str) -> Agent:
        scope, sys_id = AGENTS[agent_id]
        queue = scope.split(":")[1]
        return Agent(agent_id, queues=[queue], user_sys_id=sys_id, scopes={scope})

    async def log_in(agent_id: str, *, ready: bool = True) -> None:
        await engine.login(agent(agent_id), ready=ready)
        say(clock, f"{agent_id} logs in ({'ready' if ready else 'on a break'})")

    async def back_from_break(agent_id: str) -> None:
        desks.on_break.discard(agent_id)
        await engine.ready(agent_id)
        say(clock, f"{agent_id} is back from her break and ready")

    async def carrier(status: ComponentStatus) -> None:
        say(clock, f"adapter reports {CARRIER}: {status.value}")
        await engine.report_component(CARRIER, status, scopes=[EMEA])

    async def take_snapshot() -> None:
        snapshot.update(await engine.status())
        modes = ", ".join(f"{s} {m}" for s, m in snapshot["modes"].items())
        journal = snapshot["journal"]
        say(clock, f"status: {modes}; {len(snapshot['incidents']['open'])} open incident")
        say(
            clock,
            f"status: journal depth {journal['depth']}, held groups: "
            f"{', '.join(journal['held_groups'])}",
        )

    for agent_id in ("bruno", "dave", "erin"):
        plan.at(0.0, partial(log_in, agent_id))
    desks.on_break.add("carla")
    plan.at(0.0, partial(log_in, "carla", ready=False))
    plan.at(10.0, partial(log_in, "anna"))
    for call_id, (arrives, _) in CALLS.items():
        call = Call(call_id, "+14155550100", call_id.split("-")[0], arrives)
        plan.at(arrives, partial(engine.call_arrived, call))
    plan.at(20.0, partial(carrier, ComponentStatus.OUTAGE))
    plan.at(45.0, partial(try_transfer, engine, clock, "emea-2", "billing"))
    plan.at(SNAPSHOT_AT, take_snapshot)
    plan.at(80.0, partial(back_from_break, "carla"))
    plan.at(90.0, partial(carrier, ComponentStatus.OPERATIONAL))
    plan.at(135.0, partial(try_transfer, engine, clock, "emea-4", "billing"))

    async def over() -> bool:
        return len(finished) == len(CALLS) and await drained(engine)

    async with engine:
        if await plan.play(clock, until=over):
            say(clock, "done")
        else:
            say(clock, "gave up waiting for the calls to end and the journal to drain")
        status = await engine.status()

    lines, duplicates, missing = check(fake)
    print("\nRecords per call:")
    print("\n".join(lines))
    print("\nStatus at the end:")
    print("\n".join(summary(status)))
    if show_json:
        print(f"\nStatus snapshot at t={SNAPSHOT_AT:g} s:")
        print(json.dumps(snapshot, indent=2))
    print(f"\ncalls: {len(CALLS)}, duplicates: {duplicates}, missing: {missing}")
    return 1 if duplicates or missing else 0


def main(argv: list[str] | None = None) -> int:
    """Run the scenario and return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print the status snapshot taken at t={SNAPSHOT_AT:g} s",
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(args.json))


if __name__ == "__main__":
    sys.exit(main())
