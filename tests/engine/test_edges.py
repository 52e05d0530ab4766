"""Engine edges: the default journal file, `end` for a call nobody answered, subscribers."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from callresilience.engine import (
    Engine,
    EngineConfig,
    RecordMapping,
    default_journal_path,
    servicenow_time,
)
from callresilience.engine._types import journal_path_for
from callresilience.journal import MemoryJournal, SqliteJournal
from callresilience.routing import CallAbandoned, CallState
from callresilience.servicenow import BasicAuth
from callresilience.testing import ManualClock

from .conftest import RecordingChannel, Rig, build_rig, make_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("system", "environ", "folder"),
    [
        ("posix", {"XDG_STATE_HOME": "/srv/state"}, "/srv/state"),
        ("posix", {}, "/home/op/.local/state"),
        ("nt", {"LOCALAPPDATA": "/c/Users/op/Local"}, "/c/Users/op/Local"),
        ("nt", {}, "/home/op/AppData/Local"),
    ],
)
def test_the_default_journal_is_in_the_users_state_folder(
    system: str, environ: dict[str, str], folder: str
) -> None:
    """XDG_STATE_HOME (else ~/.local/state), or %LOCALAPPDATA% on Windows, holds the journal."""
    path = journal_path_for(system, environ, Path("/home/op"))
    assert path == Path(folder) / "callresilience" / "journal.db"


async def test_an_engine_with_the_default_config_opens_a_sqlite_journal_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only a URL and credentials: the engine creates the folder and a SQLite journal in it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "missing" / "state"))
    config = EngineConfig("https://example.service-now.com", auth=BasicAuth("u", "p"))
    clock = ManualClock()
    engine = Engine(config, RecordingChannel(clock), clock=clock)
    try:
        assert isinstance(engine.journal, SqliteJournal)
        assert Path(engine.journal.path) == default_journal_path()
        assert default_journal_path().exists()
    finally:
        await engine.aclose()


@pytest.mark.parametrize("answered_by", [None, "ringing"])
async def test_end_of_a_call_nobody_answered_is_a_hang_up(
    rig: Rig, answered_by: str | None
) -> None:
    """end() on a waiting or ringing call abandons it, as the platform's one disconnect event."""
    if answered_by is None:
        for agent_id in ("ada", "ben"):
            await rig.engine.not_ready(agent_id)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    await rig.engine.end("c1")
    (abandoned,) = [e for e in rig.events if isinstance(e, CallAbandoned)]
    assert abandoned.call_id == "c1"
    assert rig.engine.router.finished("c1") is CallState.ABANDONED


async def test_now_is_the_engine_clock_that_call_arrival_times_use(rig: Rig) -> None:
    """engine.now() reads the injected clock, so a call stamped with it waits from then."""
    await rig.advance(7)
    assert rig.engine.now() == rig.clock.now()
    for agent_id in ("ada", "ben"):
        await rig.engine.not_ready(agent_id)
    await rig.engine.call_arrived(rig.call("c1"))
    assert rig.engine.router.call("c1").call.arrived == rig.engine.now()


@pytest.mark.parametrize(("fold", "patches"), [(True, 0), (False, 2)])
async def test_folding_follows_the_record_mapping(fold: bool, patches: int) -> None:
    """A call that ends before its records run: one POST each when folding, else PATCHes too."""
    config = make_config(records=RecordMapping(fold_updates=fold))
    async with build_rig(config) as rig:
        rig.engine.drainer.hold({"default"})
        await rig.engine.call_arrived(rig.call("c1"))
        await rig.settle()
        await rig.engine.accept("c1", "ada")
        await rig.engine.end("c1")
        rig.engine.drainer.hold(())
        await rig.drained()
        methods = [r.method for r in rig.fake.requests if "/api/now/table/" in r.path]
        assert methods.count("PATCH") == patches
        assert rig.one("interaction", "correlation_id", "c1")["state"] == "closed_complete"


async def test_call_events_are_published_after_their_records_are_journaled(
    tmp_path: Path,
) -> None:
    """A subscriber that sees CallEnded finds the call's closing entries in the journal."""
    import asyncio

    from callresilience import Call
    from callresilience.routing import CallEnded

    from .conftest import ADA

    clock = ManualClock()
    store = SqliteJournal(tmp_path / "j.db")  # appends wait for a grouped commit
    engine = Engine(make_config(), RecordingChannel(clock), clock=clock, store=store)
    seen: list[list[str]] = []
    reads: list[asyncio.Task[None]] = []

    async def read(call_id: str) -> None:
        seen.append([e.key for e in await store.list(call_id=call_id)])

    def on_event(event: object) -> None:
        if isinstance(event, CallEnded):
            reads.append(asyncio.ensure_future(read(event.call_id)))

    engine.subscribe(on_event)
    async with engine:
        engine.drainer.hold({"default"})
        await engine.login(ADA, ready=True)
        await engine.call_arrived(Call("c1", "+14155550100", "support", clock.now()))
        await engine.accept("c1", "ada")
        await engine.end("c1")
        await asyncio.gather(*reads)
    (keys,) = seen
    assert {"c1:closed", "c1:phone-log-end"} <= set(keys)


async def test_an_overflowed_call_closes_its_interaction() -> None:
    """A call that rang out and then overflowed has its Interaction closed as abandoned."""
    from callresilience import QueueConfig, RouterConfig

    config = make_config(
        router=RouterConfig(offer_timeout=20, queues=[QueueConfig("support", max_wait=30)])
    )
    async with build_rig(config) as rig2:
        await rig2.engine.not_ready("ben")
        await rig2.engine.call_arrived(rig2.call("c1"))
        await rig2.advance(21)  # ada lets the offer ring out
        await rig2.engine.not_ready("ada")
        await rig2.advance(20)
        assert rig2.engine.router.finished("c1") is CallState.OVERFLOWED
        await rig2.drained()
        assert rig2.one("interaction", "correlation_id", "c1")["state"] == "closed_abandoned"


async def retry_times(seed: int) -> list[float]:
    """When the entries of one call are due again after a 503, with the drainer seeded."""
    import random

    from callresilience import Call
    from callresilience.testing import FakeServiceNow, ServiceUnavailable

    from .conftest import ADA

    clock = ManualClock()
    fake = FakeServiceNow(clock=clock, user="sn", password="pw")
    fake.faults.add(ServiceUnavailable())
    store = MemoryJournal()
    engine = Engine(
        make_config(),
        RecordingChannel(clock),
        clock=clock,
        transport=fake.transport(),
        store=store,
        rng=random.Random(seed),
    )
    async with engine:
        await engine.login(ADA, ready=True)
        await engine.call_arrived(Call("c1", None, "support", clock.now()))
        await engine.accept("c1", "ada")
        await engine.drainer.drain_once()
        return [e.next_attempt for e in await store.list(limit=10)]


async def test_the_engines_random_source_makes_retries_repeatable() -> None:
    """Engine(rng=...) seeds the drainer's jitter: the same seed, the same retry times."""
    first, again, other = await retry_times(7), await retry_times(7), await retry_times(8)
    assert first == again
    assert first != other


async def test_subscribers_changed_while_an_event_is_published_take_effect_after_it(
    rig: Rig,
) -> None:
    """Each event goes to the subscribers there were when its publishing began."""
    from callresilience.engine import CallOffered

    first: list[object] = []
    late: list[object] = []
    to_unsubscribe: list[Callable[[], None]] = []

    def swap(event: object) -> None:
        """On the first offer: unsubscribe `first`, subscribe `late`."""
        if isinstance(event, CallOffered) and to_unsubscribe:
            to_unsubscribe.pop()()
            rig.engine.subscribe(late.append)

    unsubscribe_swap = rig.engine.subscribe(swap)
    to_unsubscribe.append(rig.engine.subscribe(first.append))
    await rig.engine.call_arrived(rig.call("c1"))
    offered = [e for e in rig.events if isinstance(e, CallOffered)]
    assert first == offered  # unsubscribed while the offer went out: it still had it
    assert late == []  # subscribed meanwhile: not that event
    await rig.engine.accept("c1", offered[0].agent_id)
    assert first == offered
    assert late == [rig.events[-1]]
    unsubscribe_swap()
    with pytest.raises(ValueError, match="not in list"):
        unsubscribe_swap()


@pytest.mark.parametrize(
    "unix", [0, 0.5, 59.999, -0.5, -1, 1_700_000_000, 1_700_000_000.999999, 253_402_300_799.5]
)
def test_servicenow_time_is_gmtime_to_the_second(unix: float) -> None:
    """The cached formatting gives what `time.gmtime` does, rounding down, any second asked."""
    import time

    for _ in range(2):  # the second time from the cache
        assert servicenow_time(unix) == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix))


@pytest.mark.parametrize(
    ("unix", "error"), [(math.nan, ValueError), (math.inf, OverflowError), (1e300, OverflowError)]
)
def test_servicenow_time_refuses_what_gmtime_refuses(unix: float, error: type[Exception]) -> None:
    """A time that is not a finite, representable second raises as `time.gmtime` does."""
    with pytest.raises(error):
        servicenow_time(unix)
