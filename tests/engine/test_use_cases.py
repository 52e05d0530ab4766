"""ServiceNow's call resiliency use cases, end to end, with the instance in every condition."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from callresilience import Agent, CallStateError, InteractionRequired, ItsmUnavailable, OfferOutcome
from callresilience.engine import InteractionCreated, OfferRejected, OfferTimedOut
from callresilience.routing import CallConnected, CallRedirected
from callresilience.testing import BlackHole, RefuseConnections

from .conftest import Rig, build_rig, make_config

pytestmark = pytest.mark.anyio

LOG, INTERACTION, WORK_ITEM = "sn_openframe_phone_log", "interaction", "awa_work_item"


async def healthy(rig: Rig) -> None:
    """The instance answers."""


async def down(rig: Rig) -> None:
    """The instance refuses connections for two minutes."""
    rig.fake.faults.add(RefuseConnections(), duration=120)


async def black_holed(rig: Rig) -> None:
    """The instance accepts requests and never answers, for two minutes."""
    rig.fake.faults.add(BlackHole(), duration=120)


async def flapping(rig: Rig) -> None:
    """The instance goes down and up every 15 seconds for two minutes."""
    for start in range(0, 120, 30):
        rig.fake.faults.add(RefuseConnections(), after=start, duration=15)


CONDITIONS: list[Callable[[Rig], Awaitable[None]]] = [healthy, down, black_holed, flapping]


def assert_accepted_records(rig: Rig, call_id: str, agent_sys_id: str) -> None:
    """One phone log and one Interaction, linked, assigned and closed."""
    log = rig.one(LOG, "call_id", call_id)
    interaction = rig.one(INTERACTION, "correlation_id", call_id)
    assert interaction["channel_metadata_document"] == log["sys_id"]
    assert interaction["channel_metadata_table"] == LOG
    assert interaction["assigned_to"] == agent_sys_id
    assert interaction["type"] == "phone"
    assert interaction["direction"] == "inbound"
    assert interaction["caller_phone_number"] == "+14155550100"
    assert interaction["state"] == "closed_complete"
    assert log["phone_number"] == "+14155550100"
    assert log["agent"] == agent_sys_id
    assert log["end_time"]
    assert log["duration"] == "30"


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.__name__)
async def test_accept_then_end(rig: Rig, condition: Callable[[Rig], Awaitable[None]]) -> None:
    """Accepted and ended: the call connects at once; its records exist once, closed."""
    await condition(rig)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    assert rig.channel.offered_to("c1") == ["ada"]
    await rig.engine.accept("c1", "ada")
    assert rig.engine.router.call("c1").state.value == "connected"
    await rig.advance(30)
    await rig.engine.end("c1")
    await rig.advance(120, step=2.0)
    await rig.drained()
    assert_accepted_records(rig, "c1", "a" * 32)


async def test_auto_accept_connects_on_offer() -> None:
    """With auto_accept, the offered call is connected without an accept event."""
    async with build_rig(make_config(auto_accept=True)) as rig:
        await rig.engine.call_arrived(rig.call("c1"))
        assert CallConnected("c1", "ada") in rig.events
        await rig.advance(30)
        await rig.engine.end("c1")
        await rig.drained()
        assert_accepted_records(rig, "c1", "a" * 32)


async def test_reject_goes_to_the_next_agent(rig: Rig) -> None:
    """A rejected offer is redirected at once to the next available agent."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.reject("c1", "ada", reason="busy with a walk-in")
    await rig.settle()
    assert rig.channel.offered_to("c1") == ["ada", "ben"]
    assert CallRedirected("c1", "ada", OfferOutcome.REJECTED) in rig.events
    assert OfferRejected("c1", "ada", "busy with a walk-in") in rig.events
    await rig.engine.accept("c1", "ben")
    await rig.advance(30)
    await rig.engine.end("c1")
    await rig.drained()
    assert_accepted_records(rig, "c1", "b" * 32)


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.__name__)
async def test_timeout_redirects_and_records_the_miss_once(
    rig: Rig, condition: Callable[[Rig], Awaitable[None]]
) -> None:
    """A timed-out offer: withdrawn, redirected, an Interaction (new) and a work item; the
    later accept updates that same Interaction."""
    await condition(rig)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.advance(20.5)
    assert ("ada", "c1", OfferOutcome.NO_ANSWER) in rig.channel.withdrawn
    assert OfferTimedOut("c1", "ada", 1) in rig.events
    assert rig.channel.offered_to("c1") == ["ada", "ben"]
    await rig.engine.accept("c1", "ben")
    await rig.advance(30)
    await rig.engine.end("c1")
    await rig.advance(120, step=2.0)
    await rig.drained()
    assert_accepted_records(rig, "c1", "b" * 32)
    interaction = rig.one(INTERACTION, "correlation_id", "c1")
    item = rig.one(WORK_ITEM, "correlation_id", "c1:missed-1")
    assert item["document_id"] == interaction["sys_id"]
    assert item["assigned_to"] == "a" * 32


async def test_caller_hangs_up_after_a_missed_offer(rig: Rig) -> None:
    """No agent ever took the call: the Interaction is closed abandoned, no phone log."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.advance(20.5)
    await rig.engine.hangup("c1")
    await rig.drained()
    assert rig.one(INTERACTION, "correlation_id", "c1")["state"] == "closed_abandoned"
    assert rig.records(LOG, "call_id", "c1") == []


async def test_abandoned_before_any_offer_writes_nothing(rig: Rig) -> None:
    """A caller who hangs up while waiting leaves no record: nobody was offered the call."""
    await rig.engine.not_ready("ada")
    await rig.engine.not_ready("ben")
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.hangup("c1")
    await rig.drained()
    assert rig.fake.records(INTERACTION) == []


async def test_open_interaction_returns_the_sys_id_when_healthy(rig: Rig) -> None:
    """Open interaction creates it ahead of the queue and returns its sys_id."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.accept("c1", "ada")
    sys_id = await rig.engine.open_interaction("c1")
    assert rig.one(INTERACTION, "correlation_id", "c1")["sys_id"] == sys_id
    assert InteractionCreated("c1", sys_id) in rig.events
    assert await rig.engine.open_interaction("c1") == sys_id


async def test_open_interaction_while_down_fails_fast_and_completes_later(rig: Rig) -> None:
    """While the instance is down: ItsmUnavailable at once; the Interaction comes later."""
    rig.fake.faults.add(RefuseConnections(), duration=60)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.accept("c1", "ada")
    await rig.advance(5)  # the drainer meets the outage and opens its breaker
    with pytest.raises(ItsmUnavailable, match="journaled"):
        await rig.engine.open_interaction("c1")
    await rig.advance(90, step=2.0)
    await rig.drained()
    assert rig.one(INTERACTION, "correlation_id", "c1")["state"] == "work_in_progress"


async def test_open_interaction_times_out_when_the_instance_hangs(rig: Rig) -> None:
    """A black-holed instance: open_interaction gives up after its timeout, on the clock."""
    rig.fake.faults.add(BlackHole(), duration=60)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.accept("c1", "ada")
    opening = asyncio.ensure_future(rig.engine.open_interaction("c1"))
    await rig.advance(6)
    with pytest.raises(ItsmUnavailable, match="did not create"):
        await opening


async def test_transfer_needs_an_interaction(rig: Rig) -> None:
    """Transfer is refused until the call has an Interaction, then handed to the adapter."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.accept("c1", "ada")
    with pytest.raises(InteractionRequired, match="open_interaction"):
        await rig.engine.transfer("c1", "billing")
    sys_id = await rig.engine.open_interaction("c1")
    await rig.engine.transfer("c1", "billing")
    assert rig.channel.transfers == [("ada", "c1", "billing", sys_id)]


async def test_hold_mute_and_disconnect_work_without_an_interaction(rig: Rig) -> None:
    """Mute, hold and disconnect need no Interaction; holds are coalesced into its state."""
    rig.fake.faults.add(RefuseConnections(), duration=300)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.accept("c1", "ada")
    await rig.engine.mute("c1")
    await rig.engine.unmute("c1")
    await rig.engine.hold("c1")
    await rig.engine.hold("c1")  # no change: nothing more journaled
    await rig.engine.resume("c1")
    await rig.engine.disconnect("c1")
    with pytest.raises(CallStateError):
        await rig.engine.mute("c1")
    entries = await rig.engine.journal.list(call_id="c1")
    assert [e.key for e in entries] == [
        "c1:phone_log",
        "c1:interaction",
        "c1:hold-1",
        "c1:hold-2",
        "c1:phone-log-end",
        "c1:closed",
    ]


async def test_an_unreachable_agent_is_skipped(rig: Rig) -> None:
    """A channel that fails to ring an agent is the unreachable outcome: next agent."""
    rig.channel.unreachable.add("ada")
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    assert rig.channel.offered_to("c1") == ["ben"]
    assert CallRedirected("c1", "ada", OfferOutcome.UNREACHABLE) in rig.events


async def test_platform_timeout_records_the_miss_like_the_engines_own(rig: Rig) -> None:
    """no_answer() from the platform: redirected, and the miss is recorded as a timeout."""
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.no_answer("c1", "ada")
    await rig.settle()
    assert rig.channel.offered_to("c1") == ["ada", "ben"]
    assert OfferTimedOut("c1", "ada", 1) in rig.events
    await rig.engine.accept("c1", "ben")
    await rig.engine.end("c1")
    await rig.drained()
    assert rig.one(WORK_ITEM, "correlation_id", "c1:missed-1")["assigned_to"] == "a" * 32


async def test_platform_picks_the_agent_with_assign(rig: Rig) -> None:
    """A platform that routes itself tells the engine whom it rang; records follow as usual."""
    await rig.engine.not_ready("ada")
    await rig.engine.not_ready("ben")
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.engine.login(Agent("cy", queues=["other"]), ready=True)
    await rig.engine.assign("c1", "cy")
    await rig.engine.accept("c1", "cy")
    assert rig.engine.router.call("c1").agent_id == "cy"
