"""Bad input through the engine: a typed error, the state exactly as it was, nothing lost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from callresilience import (
    Agent,
    AgentStateError,
    Call,
    CallResilienceError,
    CallStateError,
    DuplicateCall,
    InvalidInput,
    OfferNotPending,
    OfferOutcome,
    UnknownAgent,
    UnknownCall,
)

from .conftest import Rig

pytestmark = pytest.mark.anyio


async def offered(rig: Rig) -> None:
    """c1 rings at ada; c0 was answered and ended."""
    await rig.engine.call_arrived(rig.call("c0"))
    await rig.engine.accept("c0", "ada")
    await rig.engine.end("c0")
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()


async def connected(rig: Rig) -> None:
    await offered(rig)
    await rig.engine.accept("c1", "ada")


async def timed_out(rig: Rig) -> None:
    await offered(rig)
    await rig.advance(20.5)


Setup = Callable[[Rig], Awaitable[None]]
CASES: list[tuple[str, Setup, Callable[[Rig], Awaitable[Any]], type[Exception]]] = [
    ("accept an unknown call", offered, lambda r: r.engine.accept("nope", "ada"), UnknownCall),
    ("accept by an unknown agent", offered, lambda r: r.engine.accept("c1", "zed"), UnknownAgent),
    ("accept after the timeout", timed_out, lambda r: r.engine.accept("c1", "ada"), OfferNotPending),
    ("accept by another agent", offered, lambda r: r.engine.accept("c1", "ben"), OfferNotPending),
    ("double accept", connected, lambda r: r.engine.accept("c1", "ada"), OfferNotPending),
    ("accept after the call ended", offered, lambda r: r.engine.accept("c0", "ada"), OfferNotPending),
    ("end after the call ended", offered, lambda r: r.engine.end("c0"), CallStateError),
    ("hold after the call ended", offered, lambda r: r.engine.hold("c0"), CallStateError),
    ("hold a call still ringing", offered, lambda r: r.engine.hold("c1"), CallStateError),
    ("reuse a finished call's id", offered, lambda r: r.engine.call_arrived(r.call("c0")), DuplicateCall),
    ("log in twice", offered, lambda r: r.engine.login(Agent("ada", queues=["support"])), AgentStateError),
    ("reject with an oversized reason", offered, lambda r: r.engine.reject("c1", "ada", "x" * 500), InvalidInput),
    ("transfer to an injection string", connected, lambda r: r.engine.transfer("c1", "q^ORactive=true"), InvalidInput),
    ("open an Interaction for a ringing call", offered, lambda r: r.engine.open_interaction("c1"), CallStateError),
    ("ready an unknown agent", offered, lambda r: r.engine.ready("zed"), UnknownAgent),
]  # fmt: skip


async def state(rig: Rig) -> tuple[Any, ...]:
    """Everything an event could change: routing, what is journaled, channel calls.

    (Entries' states are left out: the drainer works them off in the background meanwhile.)
    """
    journal = await rig.engine.journal.list(limit=1_000)
    return (
        rig.engine.router.snapshot(),
        [e.key for e in journal],
        list(rig.channel.offers),
        list(rig.channel.withdrawn),
    )


@pytest.mark.parametrize(
    ("setup", "operation", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_event_is_refused_and_changes_nothing(
    rig: Rig,
    setup: Setup,
    operation: Callable[[Rig], Awaitable[Any]],
    error: type[Exception],
) -> None:
    """A refused event raises its typed error; routing, journal and channel are unchanged."""
    await setup(rig)
    before = await state(rig)
    with pytest.raises(error) as caught:
        await operation(rig)
    assert isinstance(caught.value, CallResilienceError)
    await rig.settle()
    assert await state(rig) == before


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"caller": "0044 20 7946 0000"}, "E.164"),
        ({"caller": "+1415555010\n"}, "E.164"),
        ({"call_id": "c1^NQactive=true"}, "identifier"),
        ({"attributes": {"notes": "x" * 5_000}}, "1024"),
        ({"attributes": {f"k{n}": "v" for n in range(100)}}, "at most 32"),
    ],
)
async def test_malformed_calls_never_reach_the_engine(
    rig: Rig, changes: dict[str, Any], words: str
) -> None:
    """Invalid numbers, ids and oversized attributes fail when the Call is built."""
    fields: dict[str, Any] = {
        "call_id": "c9",
        "caller": "+14155550100",
        "queue": "support",
        "arrived": 0.0,
    }
    with pytest.raises(InvalidInput, match=words):
        Call(**{**fields, **changes})


async def test_nothing_accepted_is_lost_after_refused_events(rig: Rig) -> None:
    """Refused events between real ones do not disturb the records of accepted calls."""
    await connected(rig)
    for attempt in (
        rig.engine.accept("c1", "ada"),
        rig.engine.accept("c1", "ben"),
        rig.engine.end("c0"),
    ):
        with pytest.raises(CallResilienceError):
            await attempt
    await rig.engine.end("c1")
    await rig.drained()
    for call_id in ("c0", "c1"):
        assert len(rig.records("interaction", "correlation_id", call_id)) == 1
        assert len(rig.records("sn_openframe_phone_log", "call_id", call_id)) == 1


async def test_a_refused_event_still_carries_out_what_the_timers_decided(rig: Rig) -> None:
    """An event refused after a deadline passed: the timeout's redirect still goes out."""
    await offered(rig)
    rig.clock.advance(21)  # ada's offer expired, but no timer has fired yet
    with pytest.raises(OfferNotPending):
        await rig.engine.accept("c1", "ada")
    await rig.settle()
    assert rig.channel.offered_to("c1") == ["ada", "ben"]
    assert ("ada", "c1", OfferOutcome.NO_ANSWER) in rig.channel.withdrawn
