"""An engine on virtual time, against the FakeServiceNow in process, with a recording channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import httpx
import pytest

from callresilience import Agent, Call, OfferOutcome, RouterConfig
from callresilience.engine import Engine, EngineConfig, Notice, Offer
from callresilience.journal import DrainerConfig, EntryState, JournalStore, MemoryJournal
from callresilience.resilience import BreakerConfig
from callresilience.servicenow import BasicAuth
from callresilience.testing import FakeServiceNow, ManualClock

ADA = Agent("ada", queues=["support"], user_sys_id="a" * 32)
BEN = Agent("ben", queues=["support"], user_sys_id="b" * 32)


@attrs.define
class RecordingChannel:
    """An AgentChannel that writes down what it was asked, at what virtual time."""

    clock: ManualClock
    offers: list[tuple[float, str, Offer]] = attrs.Factory(list)
    withdrawn: list[tuple[str, str, OfferOutcome]] = attrs.Factory(list)
    notices: list[tuple[str, Notice]] = attrs.Factory(list)
    transfers: list[tuple[str, str, str, str]] = attrs.Factory(list)
    unreachable: set[str] = attrs.Factory(set)

    async def offer(self, agent: Agent, offer: Offer) -> None:
        if agent.agent_id in self.unreachable:
            raise ConnectionError("the agent's softphone is gone")
        self.offers.append((self.clock.now(), agent.agent_id, offer))

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        self.withdrawn.append((agent.agent_id, call_id, reason))

    async def notify(self, agent: Agent, notice: Notice) -> None:
        self.notices.append((agent.agent_id, notice))

    async def transfer(
        self, agent: Agent, call_id: str, target: str, interaction_sys_id: str
    ) -> None:
        self.transfers.append((agent.agent_id, call_id, target, interaction_sys_id))

    def offered_to(self, call_id: str) -> list[str]:
        return [agent for _, agent, offer in self.offers if offer.call.call_id == call_id]


@attrs.define
class Rig:
    """Everything a test needs, and the two ways to move on: settle and advance."""

    clock: ManualClock
    fake: FakeServiceNow
    channel: RecordingChannel
    engine: Engine
    events: list[Any]

    async def settle(self) -> None:
        """Let every task run until nothing is left to do at this instant."""
        for _ in range(200):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        """Move virtual time on in small steps, letting everything due run at each."""
        moved = 0.0
        while moved < seconds:
            delta = min(step, seconds - moved)
            self.clock.advance(delta)
            moved += delta
            await self.settle()

    async def drained(self, limit: float = 600.0) -> None:
        """Move time on until the journal has nothing pending or in flight."""
        waited = 0.0
        while waited < limit:
            counts = await self.engine.journal.counts()
            if counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0:
                return
            await self.advance(5.0, step=1.0)
            waited += 5.0
        raise AssertionError(f"the journal did not drain: {await self.engine.journal.counts()}")

    def call(self, call_id: str = "c1", **kwargs: Any) -> Call:
        return Call(call_id, "+14155550100", "support", self.clock.now(), **kwargs)

    def records(self, table: str, field: str, value: str) -> list[dict[str, str]]:
        return [r for r in self.fake.records(table) if r.get(field) == value]

    def one(self, table: str, field: str, value: str) -> dict[str, str]:
        (record,) = self.records(table, field, value)
        return record


def make_config(**changes: Any) -> EngineConfig:
    base = EngineConfig(
        "https://fake.service-now.com",
        auth=BasicAuth("sn", "pw"),
        journal=None,
        router=RouterConfig(offer_timeout=20, reject_delay=5, no_answer_delay=10),
        drainer=DrainerConfig(
            idle_poll=1.0,
            breaker=BreakerConfig(minimum_calls=3, window=6, open_wait=10, probes=1),
        ),
        read_timeout=5.0,
    )
    return attrs.evolve(base, **changes)


@pytest.fixture
def config() -> EngineConfig:
    """The engine configuration the tests start from."""
    return make_config()


@contextlib.asynccontextmanager
async def build_rig(
    config: EngineConfig,
    *,
    agents: Sequence[Agent] = (ADA, BEN),
    route: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    store: JournalStore | None = None,
) -> AsyncIterator[Rig]:
    """Start an engine with `agents` (ada and ben) logged in and ready.

    `route` wraps the fake's transport (to cut one of several routes to it, say); `store` is
    the journal (default: a new `MemoryJournal`).
    """
    clock = ManualClock()
    fake = FakeServiceNow(clock=clock, user="sn", password="pw")
    channel = RecordingChannel(clock)
    transport = fake.transport() if route is None else route(fake.transport())
    store = MemoryJournal() if store is None else store
    engine = Engine(config, channel, clock=clock, transport=transport, store=store)
    events: list[Any] = []
    engine.subscribe(events.append)
    async with engine:
        for agent in agents:
            await engine.login(agent, ready=True)
        yield Rig(clock, fake, channel, engine, events)


@pytest.fixture
async def rig(config: EngineConfig) -> AsyncIterator[Rig]:
    """A started engine with ada and ben logged in and ready."""
    async with build_rig(config) as built:
        yield built
