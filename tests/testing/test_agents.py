"""ScriptedAgents: seeded answers, talk and wrap-up on the clock, notices, coming back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callresilience import (
    Agent,
    AgentChannel,
    Call,
    InvalidInput,
    Mode,
    OfferOutcome,
    RouterConfig,
)
from callresilience.engine import Engine, EngineConfig, Notice
from callresilience.journal import EntryState
from callresilience.routing import AgentNotReady
from callresilience.servicenow import BasicAuth
from callresilience.testing import (
    AgentBehaviour,
    Distribution,
    FakeServiceNow,
    ManualClock,
    ScriptedAgents,
)

pytestmark = pytest.mark.anyio

ADA = Agent("ada", queues=["support"], user_sys_id="a" * 32)
QUICK = AgentBehaviour(
    accept=1.0,
    reject=0.0,
    ring=Distribution.fixed(2.0),
    talk=Distribution.fixed(10.0),
    wrap_up=Distribution.fixed(1.0),
    acknowledge=Distribution.fixed(3.0),
    away=Distribution.fixed(5.0),
)


class Rig:
    """An engine on a manual clock, the fake in process, and scripted agents."""

    def __init__(self, behaviour: AgentBehaviour, *, wrap_up_time: float = 5.0) -> None:
        self.clock = ManualClock()
        self.fake = FakeServiceNow(clock=self.clock)
        self.agents = ScriptedAgents(self.clock, behaviour, seed=3)
        config = EngineConfig(
            "https://fake.service-now.com",
            auth=BasicAuth("u", "p"),
            journal=None,
            router=RouterConfig(
                offer_timeout=10, wrap_up_time=wrap_up_time, no_answer_delay=1, max_no_answer=1
            ),
        )
        self.engine = Engine(config, self.agents, clock=self.clock, transport=self.fake.transport())
        self.agents.bind(self.engine)
        self.events: list[Any] = []
        self.engine.subscribe(self.events.append)

    async def advance(self, seconds: float) -> None:
        """Move virtual time on in half-second steps, letting everything due run."""
        for _ in range(int(seconds * 2)):
            self.clock.advance(0.5)
            for _ in range(100):
                await asyncio.sleep(0)

    async def drained(self) -> bool:
        """Whether the journal has nothing left to write."""
        counts = await self.engine.journal.counts()
        return counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0

    async def hang_up_after(self, ringing: float, then: float = 0.0) -> None:
        """Ada logs in, a call arrives, the caller hangs up `ringing` s later; wait `then`."""
        await self.engine.login(ADA, ready=True)
        await self.engine.call_arrived(Call("c1", "+14155550100", "support", self.clock.now()))
        await self.advance(ringing)
        await self.engine.hangup("c1")
        await self.advance(then)

    def kinds(self) -> list[str]:
        """What the agents did, in order."""
        return [a.kind for a in self.agents.actions]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A rig whose agents accept every offer."""
    rig = Rig(QUICK)
    async with rig.engine:
        yield rig
    await rig.agents.aclose()


def test_scripted_agents_are_an_agent_channel() -> None:
    """The class satisfies the AgentChannel protocol."""
    assert isinstance(ScriptedAgents(ManualClock()), AgentChannel)


async def test_an_accepting_agent_answers_talks_ends_and_wraps_up(rig: Rig) -> None:
    """Accept after the ring delay, end after the talk time, finish wrap-up, records made."""
    await rig.engine.login(ADA, ready=True)
    await rig.engine.call_arrived(Call("c1", "+14155550100", "support", rig.clock.now()))
    await rig.advance(1)
    assert rig.kinds() == ["offered"]
    await rig.advance(2)
    assert rig.kinds() == ["offered", "accept"]
    await rig.advance(12)
    assert rig.kinds() == ["offered", "accept", "end", "wrap_up_done"]
    assert await rig.drained()
    assert len(rig.fake.records("sn_openframe_phone_log")) == 1
    assert [r["state"] for r in rig.fake.records("interaction")] == ["closed_complete"]


async def test_withdrawn_offer_is_never_answered(rig: Rig) -> None:
    """The caller hangs up while it rings: the agent does not accept afterwards."""
    await rig.hang_up_after(1, 5)
    assert rig.kinds() == ["offered", "withdrawn"]


async def test_caller_hanging_up_mid_call_makes_the_end_too_late(rig: Rig) -> None:
    """The caller hangs up during the talk: the agent's end() is refused, recorded as too late."""
    await rig.hang_up_after(3, 12)
    assert rig.kinds() == ["offered", "accept", "too_late"]
    assert rig.agents.actions[-1].detail == "CallStateError"


async def test_rejecting_agent_rejects_and_call_is_offered_again() -> None:
    """A rejecting agent calls reject; the call goes back in line and is offered again."""
    rig = Rig(AgentBehaviour(accept=0.0, reject=1.0, ring=Distribution.fixed(1.0)))
    async with rig.engine:
        await rig.hang_up_after(8)
    await rig.agents.aclose()
    assert rig.kinds()[:3] == ["offered", "reject", "offered"]


async def test_silent_agent_rings_out_then_comes_back_ready() -> None:
    """An agent who never answers is set not ready by the engine, and is ready `away` later."""
    rig = Rig(AgentBehaviour(accept=0.0, reject=0.0, away=Distribution.fixed(5.0)))
    async with rig.engine:
        await rig.engine.login(ADA, ready=True)
        await rig.engine.call_arrived(Call("c1", "+14155550100", "support", rig.clock.now()))
        await rig.advance(11)
        assert any(isinstance(e, AgentNotReady) for e in rig.events)
        await rig.advance(6)
        await rig.engine.hangup("c1")
    await rig.agents.aclose()
    assert rig.kinds()[:4] == ["offered", "no_answer", "withdrawn", "ready"]


async def test_mode_notices_are_acknowledged_after_a_delay(rig: Rig) -> None:
    """A mode notice is acknowledged `acknowledge` seconds after it arrives."""
    await rig.engine.login(ADA, ready=True)
    notice = Notice("mode", "switch", {"notice_id": 7})
    await rig.agents.notify(ADA, notice)
    await rig.advance(4)
    assert rig.kinds() == ["notified", "too_late"]  # the engine never sent notice 7
    await rig.agents.notify(ADA, Notice("info", "hello"))
    assert rig.kinds()[-1] == "notified"


async def test_engine_mode_notice_is_acknowledged(rig: Rig) -> None:
    """A real mode notice from the engine is acknowledged through engine.acknowledge."""
    await rig.engine.login(ADA, ready=True)
    await rig.engine.force_mode("default", Mode.RESILIENCY)
    await rig.advance(4)
    assert rig.kinds() == ["notified", "acknowledge"]
    assert (await rig.engine.status())["notices"] == []


async def test_withdraw_and_transfer_are_recorded() -> None:
    """Withdraw of an unknown offer and a transfer are only written down."""
    agents = ScriptedAgents(ManualClock())
    await agents.withdraw(ADA, "c9", OfferOutcome.CANCELLED)
    await agents.transfer(ADA, "c9", "billing", "x" * 32)
    assert [(a.kind, a.detail) for a in agents.actions] == [
        ("withdrawn", "cancelled"),
        ("transfer", "billing"),
    ]


async def test_offer_before_bind_fails_clearly() -> None:
    """Answering without an engine says to call bind() first."""
    clock = ManualClock(autojump=True)
    agents = ScriptedAgents(clock, QUICK)
    with pytest.raises(RuntimeError, match="bind"):
        await agents._answer("accept", "ada", "c1", 0.0, random.Random(0))


def test_decisions_depend_on_the_offer_not_on_ordering() -> None:
    """The same seed, agent, call and attempt always draw the same numbers."""
    one = ScriptedAgents(ManualClock(), seed=5)._rng("ada", "c1", 1).random()
    two = ScriptedAgents(ManualClock(), seed=5)._rng("ada", "c1", 1).random()
    other = ScriptedAgents(ManualClock(), seed=6)._rng("ada", "c1", 1).random()
    assert one == two != other


def test_distributions_sample_within_their_bounds() -> None:
    """Fixed, uniform and capped exponential draws stay in range; averages are right."""
    rng = random.Random(1)
    assert Distribution.fixed(3).sample(rng) == 3
    assert all(2 <= Distribution.uniform(2, 4).sample(rng) <= 4 for _ in range(100))
    capped = Distribution.exponential(10, minimum=1, cap=5)
    assert all(1 <= capped.sample(rng) <= 5 for _ in range(100))
    assert Distribution.exponential(0, minimum=2).sample(rng) == 2
    assert Distribution.uniform(2, 4).average() == 3
    assert Distribution.exponential(10, minimum=1).average() == 11
    assert Distribution.fixed(3).average() == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: Distribution.uniform(4, 2),
        lambda: Distribution.exponential(1, minimum=5, cap=2),
        lambda: Distribution.fixed(-1),
        lambda: Distribution("normal", 1),
        lambda: AgentBehaviour(accept=0.8, reject=0.5),
        lambda: AgentBehaviour(accept=1.5),
    ],
)
def test_bad_behaviour_values_are_refused(make: Any) -> None:
    """Impossible distributions and probabilities raise InvalidInput or ValueError."""
    with pytest.raises((InvalidInput, ValueError)):
        make()


def test_no_answer_is_what_accept_and_reject_leave() -> None:
    """The no-answer chance is 1 - accept - reject."""
    assert AgentBehaviour(accept=0.7, reject=0.2).no_answer == pytest.approx(0.1)
    agents = ScriptedAgents(ManualClock(), behaviours={"ada": AgentBehaviour(accept=0.1)})
    assert agents.behaviour("ada").accept == 0.1
    assert agents.behaviour("ben").accept == 0.8
    assert "seed=0" in repr(agents)
    assert agents.pending == 0
