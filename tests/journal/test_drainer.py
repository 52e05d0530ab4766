"""The drainer against the FakeServiceNow in process: every record once, whatever fails."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest

from callresilience import (
    AmbiguousError,
    AuthenticationError,
    RateLimited,
    TransientError,
)
from callresilience.journal import (
    Drainer,
    DrainerConfig,
    Entry,
    EntryState,
    MemoryJournal,
    RecordDead,
    RecordWritten,
    create_intent,
    update_intent,
)
from callresilience.journal import _drainer as drainer_module
from callresilience.resilience import Backoff, BreakerConfig, BreakerState, BreakerStateChanged
from callresilience.servicenow import BasicAuth, ServiceNowClient
from callresilience.testing import (
    BlackHole,
    DropResponse,
    FakeServiceNow,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
)

CONFIG = DrainerConfig(
    breaker=BreakerConfig(minimum_calls=3, window=6, open_wait=10, probes=1),
    idle_poll=0.5,
)


@attrs.define
class Rig:
    """A fake instance, a client on its transport, a memory journal and a drainer."""

    clock: ManualClock
    fake: FakeServiceNow
    client: ServiceNowClient
    store: MemoryJournal
    drainer: Drainer
    events: list[Any]

    async def append_call(self, call_id: str) -> None:
        """Journal the records of one accepted call: phone log, Interaction, and its close."""
        await self.store.append(
            [
                create_intent(
                    call_id,
                    "phone_log",
                    "sn_openframe_phone_log",
                    {"call_id": call_id, "phone_number": "+14155550100"},
                    correlation=("call_id", call_id),
                ),
                create_intent(
                    call_id,
                    "interaction",
                    "interaction",
                    {
                        "type": "phone",
                        "correlation_id": call_id,
                        "channel_metadata_table": "sn_openframe_phone_log",
                        "channel_metadata_document": {"$ref": "phone_log"},
                    },
                    correlation=("correlation_id", call_id),
                ),
                update_intent(
                    call_id, "end", "interaction", "interaction", {"state": "closed_complete"}
                ),
            ],
            self.clock.time(),
        )

    async def drain(self, rounds: int = 50, step: float = 5.0) -> None:
        """Run batches, moving time on between them, until nothing is left to do."""
        for _ in range(rounds):
            await self.drainer.drain_once()
            counts = await self.store.counts()
            if counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0:
                return
            self.clock.advance(step)
            if self.drainer.breaker().state(self.clock.now()) is BreakerState.HALF_OPEN:
                await self.drainer._probe(self.drainer.breaker())
        raise AssertionError(f"the journal did not drain: {await self.store.counts()}")

    def records(self, table: str, field: str, value: str) -> list[dict[str, str]]:
        return [r for r in self.fake.records(table) if r.get(field) == value]


def build_rig(
    clock: ManualClock,
    fake: FakeServiceNow,
    config: DrainerConfig = CONFIG,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Rig:
    """A rig whose client times out after 5 s of fake time (enter `rig.client` to use it)."""
    client = ServiceNowClient(
        "https://fake.service-now.com",
        auth=BasicAuth("sn", "pw"),
        transport=transport or fake.transport(),
        clock=clock,
        read_timeout=5.0,
    )
    store = MemoryJournal()
    events: list[Any] = []
    drainer = Drainer(store, client, config, clock=clock, on_event=events.append, owner="w1")
    return Rig(clock, fake, client, store, drainer, events)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A rig on virtual time."""
    clock = ManualClock(autojump=True)
    fake = FakeServiceNow(clock=clock, user="sn", password="pw", strict_tables=True)
    rig = build_rig(clock, fake)
    async with rig.client:
        yield rig


def assert_once(rig: Rig, call_id: str) -> None:
    """Exactly one phone log and one Interaction, linked, and the Interaction closed."""
    logs = rig.records("sn_openframe_phone_log", "call_id", call_id)
    interactions = rig.records("interaction", "correlation_id", call_id)
    assert len(logs) == 1, logs
    assert len(interactions) == 1, interactions
    assert interactions[0]["channel_metadata_document"] == logs[0]["sys_id"]
    assert interactions[0]["state"] == "closed_complete"


@pytest.mark.anyio
async def test_healthy_instance_gets_each_record_once_in_call_order(rig: Rig) -> None:
    """Phone log, then the Interaction pointing at it, then its update: one each."""
    await rig.append_call("c1")
    await rig.append_call("c2")
    await rig.drain()
    assert_once(rig, "c1")
    assert_once(rig, "c2")
    written = [e for e in rig.events if isinstance(e, RecordWritten)]
    assert [e.name for e in written if e.call_id == "c1"] == [
        "phone_log",
        "interaction",
        "interaction",
    ]
    assert not any(e.adopted for e in written)
    assert await rig.store.call_results("c1") == {
        "phone_log": rig.records("sn_openframe_phone_log", "call_id", "c1")[0]["sys_id"],
        "interaction": rig.records("interaction", "correlation_id", "c1")[0]["sys_id"],
    }


@pytest.mark.anyio
async def test_an_update_folded_into_its_create_is_one_post_and_no_patch(rig: Rig) -> None:
    """The close appended before the Interaction ran goes out in its POST; no PATCH follows."""
    await rig.append_call("c1")
    await rig.drain()
    assert_once(rig, "c1")
    (interaction,) = rig.records("interaction", "correlation_id", "c1")
    assert interaction["sys_mod_count"] == "0"  # created closed, never updated
    assert [(r.method, r.table) for r in rig.fake.requests] == [
        ("POST", "sn_openframe_phone_log"),
        ("POST", "interaction"),
    ]
    closed = next(e for e in rig.events if isinstance(e, RecordWritten) and e.key == "c1:end")
    assert (closed.kind, closed.name, closed.sys_id) == (
        "update",
        "interaction",
        interaction["sys_id"],
    )


@pytest.mark.anyio
async def test_an_update_appended_after_its_create_ran_is_a_patch(rig: Rig) -> None:
    """Once the create was claimed, its update is sent on its own, after it."""
    await rig.append_call("c1")
    await rig.drain()
    await rig.store.append(
        [update_intent("c1", "reopen", "interaction", "interaction", {"state": "new"})],
        rig.clock.time(),
    )
    await rig.drain()
    (interaction,) = rig.records("interaction", "correlation_id", "c1")
    assert (interaction["state"], interaction["sys_mod_count"]) == ("new", "1")
    assert rig.fake.requests[-1].method == "PATCH"


@pytest.mark.anyio
async def test_call_results_are_read_from_the_store_only_when_not_known(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drainer reuses the sys_ids it stored; a new one reads them from the journal."""
    reads: list[str] = []
    real = rig.store.call_results

    async def counted(call_id: str) -> dict[str, str]:
        reads.append(call_id)
        return await real(call_id)

    monkeypatch.setattr(rig.store, "call_results", counted)
    await rig.append_call("c1")
    await rig.drain()
    assert reads == []
    reopen = update_intent("c1", "reopen", "interaction", "interaction", {"state": "new"})
    await rig.store.append([reopen], rig.clock.time())
    rig.drainer = Drainer(rig.store, rig.client, CONFIG, clock=rig.clock, owner="w2")
    await rig.drain()
    assert reads == ["c1"]
    (interaction,) = rig.records("interaction", "correlation_id", "c1")
    assert interaction["state"] == "new"


@pytest.mark.anyio
async def test_the_drainer_keeps_the_results_of_a_bounded_number_of_calls(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound the oldest call's results are forgotten (and read again if needed)."""
    monkeypatch.setattr(drainer_module, "_KNOWN_CALLS", 2)
    for n in range(3):
        await rig.append_call(f"c{n}")
    await rig.drain()
    assert list(rig.drainer._known) == ["c1", "c2"]
    for n in range(3):
        assert_once(rig, f"c{n}")


@pytest.mark.anyio
async def test_lost_response_after_commit_is_adopted_not_repeated(rig: Rig) -> None:
    """The instance commits and the answer is lost: the lookup finds it; no second record."""
    rig.fake.faults.add(DropResponse(), methods={"POST"}, duration=1.0)
    await rig.append_call("c1")
    await rig.drain()
    assert_once(rig, "c1")
    assert any(e.adopted for e in rig.events if isinstance(e, RecordWritten))


@pytest.mark.anyio
async def test_black_hole_waits_out_the_settle_time_before_posting_again(rig: Rig) -> None:
    """After a timeout the drainer only looks the record up until the settle time is over."""
    rig.fake.faults.add(BlackHole(), duration=30.0)
    await rig.append_call("c1")
    await rig.drain(rounds=100)
    assert_once(rig, "c1")
    posts = [
        r
        for r in rig.fake.requests
        if r.method == "POST" and r.table == "sn_openframe_phone_log" and r.outcome == "answered"
    ]
    black_holed = [r for r in rig.fake.requests if r.outcome in {"black_holed", "timed_out"}]
    assert len(posts) == 1
    assert black_holed
    assert posts[0].at - black_holed[0].at >= CONFIG.settle


@pytest.mark.anyio
async def test_outage_opens_the_breaker_and_nothing_is_sent_while_open(rig: Rig) -> None:
    """Refused connections open the breaker; requests stop until a probe succeeds."""
    outage = rig.fake.faults.add(RefuseConnections(), duration=60.0)
    for n in range(5):
        await rig.append_call(f"c{n}")
    await rig.drainer.drain_once()
    assert rig.drainer.breaker().state(rig.clock.now()) is BreakerState.OPEN
    sent = len(rig.fake.requests)
    assert await rig.drainer.drain_once() == 0
    assert len(rig.fake.requests) == sent
    rig.fake.faults.remove(outage)
    # As the background loop does: no entry runs until open_wait is over and a probe passed
    # (draining right away could finish every call, folded to two requests, before that).
    rig.clock.advance(CONFIG.breaker.open_wait)
    await rig.drainer._probe(rig.drainer.breaker())
    await rig.drain(rounds=200)
    for n in range(5):
        assert_once(rig, f"c{n}")
    moves = [(e.old, e.new) for e in rig.events if isinstance(e, BreakerStateChanged)]
    assert moves[0] == (BreakerState.CLOSED, BreakerState.OPEN)
    assert moves[-1] == (BreakerState.HALF_OPEN, BreakerState.CLOSED)


@pytest.mark.anyio
async def test_service_unavailable_is_retried_until_it_passes(rig: Rig) -> None:
    """503s on writes are retried (with a lookup first) until the instance recovers."""
    rig.fake.faults.add(ServiceUnavailable(), duration=20.0, methods={"POST"})
    await rig.append_call("c1")
    await rig.drain(rounds=100)
    assert_once(rig, "c1")


@pytest.mark.anyio
async def test_rate_limit_slows_the_bucket_and_loses_nothing(rig: Rig) -> None:
    """429s cut the learned rate; every record still arrives once."""
    rig.fake.faults.add(RateLimit(5, per="second"))
    for n in range(10):
        await rig.append_call(f"c{n}")
    await rig.drain(rounds=200, step=1.0)
    for n in range(10):
        assert_once(rig, f"c{n}")
    assert any(r.status == 429 for r in rig.fake.requests)
    assert rig.drainer.bucket.rate < CONFIG.rate


@pytest.mark.anyio
async def test_permanent_refusal_makes_the_entry_dead_and_replay_revives_it(rig: Rig) -> None:
    """A 400 (unknown table) kills the entry, holds the call's later entries, and replays."""
    await rig.store.append(
        [
            create_intent("c1", "log", "u_missing", {"u_call": "c1"}, correlation=("u_call", "c1")),
            update_intent("c1", "close", "u_missing", "log", {"u_state": "closed"}),
        ],
        rig.clock.time(),
    )
    await rig.drainer.drain_once()
    (dead,) = await rig.store.dead()
    assert "Invalid table" in (dead.last_error or "")
    assert next(e for e in rig.events if isinstance(e, RecordDead)).key == "c1:log"
    assert await rig.drainer.drain_once() == 0  # the update waits behind the dead create
    rig.fake.create_table("u_missing")
    await rig.store.replay(dead.entry_id, rig.clock.time())
    await rig.drain()
    (record,) = rig.fake.records("u_missing")
    assert record["u_state"] == "closed"


@pytest.mark.anyio
async def test_a_dead_workers_entries_are_finished_by_the_next_after_the_lease(rig: Rig) -> None:
    """A worker that claims and dies leaves entries that another finishes, once."""
    await rig.append_call("c1")
    claimed = await rig.store.claim("dead-worker", rig.clock.time(), 10, CONFIG.lease)
    assert claimed
    assert await rig.drainer.drain_once() == 0  # still leased to the dead worker
    rig.clock.advance(CONFIG.lease + 1)
    await rig.drain()
    assert_once(rig, "c1")


@pytest.mark.anyio
async def test_background_loop_drains_after_wake(rig: Rig) -> None:
    """Opened as a context manager, the drainer works in the background until closed."""
    async with rig.drainer as drainer:
        await rig.append_call("c1")
        drainer.wake()
        for _ in range(200):
            if len(rig.records("interaction", "state", "closed_complete")) == 1:
                break
            await rig.clock.sleep(0.1)
    assert_once(rig, "c1")
    assert "w1" in repr(rig.drainer)


def test_lease_must_outlast_the_settle_time() -> None:
    """A lease shorter than settle + 10 s would let two posts overlap: it is refused."""
    from callresilience import InvalidInput

    with pytest.raises(InvalidInput, match="lease"):
        DrainerConfig(lease=30, settle=65)


@pytest.mark.anyio
async def test_held_groups_stay_in_the_journal_until_released(rig: Rig) -> None:
    """hold() leaves a group's entries pending; releasing it drains them like any other."""
    await rig.store.append(
        [
            create_intent(
                call_id,
                "phone_log",
                "sn_openframe_phone_log",
                {"call_id": call_id},
                correlation=("call_id", call_id),
                group=group,
            )
            for call_id, group in (("c1", "region:eu"), ("c2", "region:us"))
        ],
        rig.clock.time(),
    )
    rig.drainer.hold({"region:eu"})
    assert rig.drainer.held == {"region:eu"}
    for _ in range(3):
        await rig.drainer.drain_once()
        rig.clock.advance(5)
    assert len(rig.records("sn_openframe_phone_log", "call_id", "c2")) == 1
    assert not rig.records("sn_openframe_phone_log", "call_id", "c1")
    assert (await rig.store.counts())[EntryState.PENDING] == 1
    rig.drainer.hold(())
    await rig.drainer.drain_once()
    assert len(rig.records("sn_openframe_phone_log", "call_id", "c1")) == 1


@pytest.mark.anyio
async def test_a_replayed_create_that_may_have_written_looks_before_posting(rig: Rig) -> None:
    """An ambiguous create killed by a refusal keeps its mark, so its replay adopts, not posts."""
    (entry,) = await rig.store.append(
        [create_intent("c1", "log", "u_log", {"u_call": "c1"}, correlation=("u_call", "c1"))],
        rig.clock.time(),
    )
    (claimed,) = await rig.store.claim("w1", rig.clock.time(), 1, CONFIG.lease)
    # The first attempt's POST went out and its answer was lost.
    await rig.store.retry(
        claimed.entry_id, "w1", rig.clock.time(), rig.clock.time(), "ambiguous: AmbiguousError: x"
    )
    rig.clock.advance(CONFIG.settle + 1)
    await rig.drainer.drain_once()  # the lookup meets an unknown table: refused for good
    (dead,) = await rig.store.dead()
    assert (dead.last_error or "").startswith("ambiguous: PermanentError")
    # The operator fixes the table; the record the lost answer was about is there.
    rig.fake.create_table("u_log")
    rig.fake.insert("u_log", {"u_call": "c1"})
    await rig.store.replay(entry.entry_id, rig.clock.time())
    await rig.drain()
    assert len(rig.fake.records("u_log")) == 1
    assert next(e for e in rig.events if isinstance(e, RecordWritten)).adopted


@pytest.mark.anyio
async def test_a_refused_login_leaves_entries_waiting_not_dead(rig: Rig) -> None:
    """A 401 concerns every entry: it waits in the journal and counts against the breaker."""
    wrong = ServiceNowClient(
        "https://fake.service-now.com",
        auth=BasicAuth("sn", "not-the-password"),
        transport=rig.fake.transport(),
        clock=rig.clock,
    )
    await rig.append_call("c1")
    async with wrong:
        drainer = Drainer(rig.store, wrong, CONFIG, clock=rig.clock, owner="w1")
        for _ in range(3):
            await drainer.drain_once()
            rig.clock.advance(600)
        assert drainer.breaker().state(rig.clock.now()) is not BreakerState.CLOSED
    assert await rig.store.dead() == []
    (waiting,) = await rig.store.list(state=EntryState.PENDING, limit=1)
    assert (waiting.last_error or "").startswith("AuthenticationError")
    rig.clock.advance(600)  # the credentials are fixed; the backoff has run out
    await rig.drain()
    assert_once(rig, "c1")


@pytest.mark.anyio
async def test_entries_that_backed_off_during_an_outage_run_as_soon_as_it_is_over() -> None:
    """Backoffs taken while the instance was down do not outlast it: the close runs them."""
    clock = ManualClock(autojump=True)
    fake = FakeServiceNow(clock=clock, user="sn", password="pw", strict_tables=True)
    config = attrs.evolve(CONFIG, backoff=Backoff(initial=60.0, cap=60.0))
    rig = build_rig(clock, fake, config)
    rig.drainer = Drainer(
        rig.store, rig.client, config, clock=clock, on_event=rig.events.append,
        rng=random.Random(7), owner="w1",
    )  # fmt: skip
    async with rig.client:
        outage = fake.faults.add(RefuseConnections(), duration=300.0)
        for n in range(5):
            await rig.append_call(f"c{n}")
        await rig.drainer.drain_once()
        assert rig.drainer.breaker().state(clock.now()) is BreakerState.OPEN
        fake.faults.remove(outage)
        clock.advance(CONFIG.breaker.open_wait)
        await rig.drainer._probe(rig.drainer.breaker())
        assert rig.drainer.breaker().state(clock.now()) is BreakerState.CLOSED
        waiting = await rig.store.list(state=EntryState.PENDING)
        assert any(e.next_attempt > clock.time() for e in waiting)  # backoffs still running
        await rig.drainer.drain_once()  # no time passes
        logs = [r["call_id"] for r in fake.records("sn_openframe_phone_log")]
        assert sorted(logs) == [f"c{n}" for n in range(5)]


@pytest.mark.parametrize(
    ("error", "kind", "remembered"),
    [
        (TransientError("refused"), "create", True),
        (AuthenticationError("401"), "update", True),
        (AmbiguousError("answered 500", status_code=500), "update", True),
        (AmbiguousError("no answer"), "create", True),
        (AmbiguousError("no answer"), "update", False),  # waits out the settle time
        (RateLimited("429", retry_after=30.0), "create", False),  # waits out Retry-After
    ],
)
def test_which_backoffs_a_recovery_cuts_short(
    error: Exception, kind: str, remembered: bool
) -> None:
    """Only waits taken for the instance's trouble are cut; Retry-After and settling are kept."""
    drainer = Drainer(MemoryJournal(), ServiceNowClient("https://x.service-now.com",
                      auth=BasicAuth("u", "p")), CONFIG)  # fmt: skip
    entry = Entry(
        entry_id=4, call_id="c1", seq=1, kind=kind, payload={}, key="c1:x",
        state=EntryState.IN_FLIGHT, attempts=1, next_attempt=0.0, lease_owner="w1",
        lease_until=1.0, last_error=None, created=0.0, updated=0.0, result=None,
    )  # fmt: skip
    drainer._backed_off_for_trouble(entry, error)
    assert (entry.entry_id in drainer._backed_off) is remembered
