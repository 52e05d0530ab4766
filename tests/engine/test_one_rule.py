"""The one rule, proven: the call path never waits on ServiceNow, whatever state it is in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from callresilience.testing import BlackHole, Latency, RefuseConnections

from .conftest import Rig

pytestmark = pytest.mark.anyio


async def instance_healthy(rig: Rig) -> None:
    """Nothing goes wrong."""


async def instance_black_holed(rig: Rig) -> None:
    """Every request is accepted and never answered."""
    rig.fake.faults.add(BlackHole())


async def instance_refusing(rig: Rig) -> None:
    """Every connection is refused."""
    rig.fake.faults.add(RefuseConnections())


async def instance_slow(rig: Rig) -> None:
    """Every request takes a minute."""
    rig.fake.faults.add(Latency(60.0))


CONDITIONS: list[Callable[[Rig], Awaitable[None]]] = [
    instance_healthy,
    instance_black_holed,
    instance_refusing,
    instance_slow,
]


async def run_calls(rig: Rig, count: int) -> list[tuple[float, float, float]]:
    """Route `count` calls; for each: (arrived, offered, connected) on the virtual clock.

    Every engine call is bounded by a real-time guard: were any of them to await the instance,
    it would never return, since virtual time does not move while it waits.
    """
    times = []
    for n in range(count):
        call_id = f"c{n}"
        arrived = rig.clock.now()
        await asyncio.wait_for(rig.engine.call_arrived(rig.call(call_id)), timeout=5)
        await rig.settle()
        ((offered_at, agent, _),) = [o for o in rig.channel.offers if o[2].call.call_id == call_id]
        await asyncio.wait_for(rig.engine.accept(call_id, agent), timeout=5)
        connected = rig.clock.now()
        assert rig.engine.router.call(call_id).state.value == "connected"
        await asyncio.wait_for(rig.engine.end(call_id), timeout=5)
        times.append((arrived, offered_at, connected))
        await rig.advance(1.0)
    return times


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.__name__)
async def test_offers_and_connects_take_no_time_whatever_the_instance(
    rig: Rig, condition: Callable[[Rig], Awaitable[None]]
) -> None:
    """From arrival to offer and from accept to connected: zero virtual time, in any state."""
    await condition(rig)
    times = await run_calls(rig, 10)
    assert all(offered == arrived for arrived, offered, _ in times)
    assert all(connected == arrived for arrived, _, connected in times)


async def test_nothing_on_the_call_path_sends_a_request(rig: Rig) -> None:
    """With the drainer stopped, a full call makes no request: only the journal grows."""
    await rig.engine.drainer.aclose()
    rig.fake.clear_requests()
    await run_calls(rig, 3)
    assert rig.fake.requests == ()
    counts = await rig.engine.journal.counts()
    assert sum(counts.values()) == 3 * 4  # phone log, Interaction, and their two updates
