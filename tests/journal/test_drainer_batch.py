"""The drainer sending entries through the Batch API: every record once, whatever fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import attrs
import httpx
import pytest

from callresilience.journal import (
    DrainerConfig,
    EntryState,
    Intent,
    RecordDead,
    RecordWritten,
    create_intent,
    update_intent,
)
from callresilience.testing import (
    DropResponse,
    FakeServiceNow,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
)

from . import test_drainer
from .test_drainer import Rig, assert_once, build_rig

CONFIG = attrs.evolve(test_drainer.CONFIG, per_request=8)
BATCH_PATH = "/api/now/v1/batch"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A rig on virtual time whose drainer sends up to 8 entries per request."""
    clock = ManualClock(autojump=True)
    fake = FakeServiceNow(clock=clock, user="sn", password="pw", strict_tables=True)
    rig = build_rig(clock, fake, CONFIG)
    async with rig.client:
        yield rig


def batches(rig: Rig) -> list[int]:
    """How many sub-requests each batch the fake received carried, in order."""
    sizes: dict[str, int] = {}
    for request in rig.fake.requests:
        if request.batch_id is not None:
            sizes[request.batch_id] = sizes.get(request.batch_id, 0) + 1
    return list(sizes.values())


def alone(rig: Rig) -> list[tuple[str, str | None]]:
    """The Table API requests sent on their own (not in a batch), as (method, table)."""
    return [
        (r.method, r.table)
        for r in rig.fake.requests
        if r.batch_id is None and r.path != BATCH_PATH
    ]


@pytest.mark.anyio
async def test_heads_of_many_calls_go_in_one_request_and_each_record_is_written_once(
    rig: Rig,
) -> None:
    """Ten calls: phone logs go eight and two per request, then the Interactions the same."""
    for n in range(10):
        await rig.append_call(f"c{n}")
    await rig.drain()
    for n in range(10):
        assert_once(rig, f"c{n}")
    assert batches(rig) == [8, 2, 8, 2]
    assert alone(rig) == []
    written = [e for e in rig.events if isinstance(e, RecordWritten)]
    assert len(written) == 30  # two creates and the folded close, per call
    assert not any(e.adopted for e in written)
    assert await rig.store.call_results("c3") == {
        "phone_log": rig.records("sn_openframe_phone_log", "call_id", "c3")[0]["sys_id"],
        "interaction": rig.records("interaction", "correlation_id", "c3")[0]["sys_id"],
    }


@pytest.mark.anyio
async def test_updates_after_their_creates_ran_go_as_patches_in_a_batch(rig: Rig) -> None:
    """Updates that could not be folded are sent as PATCH sub-requests."""
    for n in range(3):
        await rig.append_call(f"c{n}")
    await rig.drain()
    await rig.store.append(
        [
            update_intent(f"c{n}", "reopen", "interaction", "interaction", {"state": "new"})
            for n in range(3)
        ],
        rig.clock.time(),
    )
    rig.fake.clear_requests()
    await rig.drain()
    patches = [r for r in rig.fake.requests if r.batch_id is not None]
    assert [(r.method, r.table, r.status) for r in patches] == [("PATCH", "interaction", 200)] * 3
    for n in range(3):
        (interaction,) = rig.records("interaction", "correlation_id", f"c{n}")
        assert (interaction["state"], interaction["sys_mod_count"]) == ("new", "1")


@pytest.mark.anyio
@pytest.mark.parametrize("per_request", [1, 8])
async def test_writes_ask_the_instance_for_the_sys_id_alone(per_request: int) -> None:
    """Creates and updates, batched or not, ask for sysparm_fields=sys_id: nothing else is read."""
    clock = ManualClock(autojump=True)
    fake = FakeServiceNow(clock=clock, user="sn", password="pw", strict_tables=True)
    rig = build_rig(clock, fake, attrs.evolve(CONFIG, per_request=per_request))
    async with rig.client:
        for n in range(3):
            await rig.append_call(f"c{n}")
        await rig.drain()
        await rig.store.append(
            [update_intent(f"c{n}", "reopen", "interaction", "interaction", {"state": "new"})
             for n in range(3)],
            rig.clock.time(),
        )  # fmt: skip
        await rig.drain()
    writes = [r for r in fake.requests if r.method in ("POST", "PATCH") and r.path != BATCH_PATH]
    assert {r.method for r in writes} == {"POST", "PATCH"}
    assert all(r.params.get("sysparm_fields") == "sys_id" for r in writes)
    for n in range(3):
        (interaction,) = rig.records("interaction", "correlation_id", f"c{n}")
        assert interaction["state"] == "new"
        assert len(rig.records("sn_openframe_phone_log", "call_id", f"c{n}")) == 1


@pytest.mark.anyio
async def test_one_refused_entry_dies_and_the_others_in_its_batch_are_written(rig: Rig) -> None:
    """A sub-request to a missing table is a 400 for that entry only."""
    await rig.store.append(
        [create_intent("bad", "log", "u_missing", {"u_call": "x"}, correlation=("u_call", "x"))],
        rig.clock.time(),
    )
    for n in range(3):
        await rig.append_call(f"c{n}")
    await rig.drain()
    for n in range(3):
        assert_once(rig, f"c{n}")
    (dead,) = await rig.store.dead()
    assert dead.key == "bad:log"
    assert "Invalid table" in (dead.last_error or "")
    assert [e.key for e in rig.events if isinstance(e, RecordDead)] == ["bad:log"]


@pytest.mark.anyio
async def test_a_lost_batch_answer_is_looked_up_and_nothing_is_written_twice(rig: Rig) -> None:
    """The batch commits and its answer is lost: each create is found by a lookup, alone."""
    rig.fake.faults.add(DropResponse(), methods={"POST"}, duration=1.0)
    for n in range(4):
        await rig.append_call(f"c{n}")
    await rig.drain(rounds=100)
    for n in range(4):
        assert_once(rig, f"c{n}")
    adopted = [e for e in rig.events if isinstance(e, RecordWritten) and e.adopted]
    assert sorted(e.call_id for e in adopted) == ["c0", "c1", "c2", "c3"]
    # The adopting lookups went alone, as reads.
    assert ("GET", "sn_openframe_phone_log") in alone(rig)


@pytest.mark.anyio
async def test_a_503_for_one_table_is_ambiguous_for_its_entries_only(rig: Rig) -> None:
    """Interactions meet 503s for a while; phone logs are written at once; all end once."""
    rig.fake.faults.add(ServiceUnavailable(), duration=15.0, tables={"interaction"})
    for n in range(4):
        await rig.append_call(f"c{n}")
    await rig.drain(rounds=100)
    for n in range(4):
        assert_once(rig, f"c{n}")
    refused = [r for r in rig.fake.requests if r.batch_id is not None and r.status == 503]
    assert refused
    assert {r.table for r in refused} == {"interaction"}


@pytest.mark.anyio
async def test_rate_limited_sub_requests_wait_and_arrive_once(rig: Rig) -> None:
    """429 sub-responses slow the bucket; every record still arrives once."""
    rig.fake.faults.add(RateLimit(5, per="second"))
    for n in range(10):
        await rig.append_call(f"c{n}")
    await rig.drain(rounds=200, step=1.0)
    for n in range(10):
        assert_once(rig, f"c{n}")
    assert any(r.status == 429 and r.batch_id is not None for r in rig.fake.requests)
    assert rig.drainer.bucket.rate < CONFIG.rate


@pytest.mark.anyio
async def test_unserviced_sub_requests_are_sent_again(rig: Rig) -> None:
    """With the instance running two per batch, the rest come back and go later, once."""
    rig.fake.batch_limit = 2
    for n in range(5):
        await rig.append_call(f"c{n}")
    await rig.drain(rounds=100)
    for n in range(5):
        assert_once(rig, f"c{n}")
    assert not any(e.adopted for e in rig.events if isinstance(e, RecordWritten))


@pytest.mark.anyio
async def test_refused_connections_write_nothing_and_everything_arrives_later(rig: Rig) -> None:
    """An outage during a batch: nothing committed, and after it every record once."""
    outage = rig.fake.faults.add(RefuseConnections(), duration=30.0)
    for n in range(6):
        await rig.append_call(f"c{n}")
    await rig.drainer.drain_once()
    assert not any(r.committed for r in rig.fake.requests)
    rig.fake.faults.remove(outage)
    rig.clock.advance(CONFIG.breaker.open_wait)
    await rig.drainer._probe(rig.drainer.breaker())
    await rig.drain(rounds=200)
    for n in range(6):
        assert_once(rig, f"c{n}")


class _NoBatchApi(httpx.AsyncBaseTransport):
    """Forwards to the fake, but answers 403 to the Batch API, as an ACL would."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == BATCH_PATH:
            self.refused += 1
            return httpx.Response(
                403,
                json={"error": {"message": "User Not Authorized", "detail": None}},
                request=request,
            )
        return await self.inner.handle_async_request(request)


@pytest.mark.anyio
async def test_a_refused_batch_api_falls_back_to_one_request_per_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 403 on the Batch API kills no entry: they go one by one, now and from then on."""
    clock = ManualClock(autojump=True)
    fake = FakeServiceNow(clock=clock, user="sn", password="pw", strict_tables=True)
    transport = _NoBatchApi(fake.transport())
    rig = build_rig(clock, fake, CONFIG, transport)
    async with rig.client:
        for n in range(5):
            await rig.append_call(f"c{n}")
        with caplog.at_level(logging.ERROR, logger="callresilience.journal"):
            await rig.drain()
    for n in range(5):
        assert_once(rig, f"c{n}")
    assert transport.refused == 1
    assert await rig.store.dead() == []
    assert any("refused a Batch API request" in r.getMessage() for r in caplog.records)
    assert alone(rig).count(("POST", "sn_openframe_phone_log")) == 5


@pytest.mark.anyio
async def test_a_create_that_may_have_been_written_goes_alone(rig: Rig) -> None:
    """After an ambiguous batch, the next attempts are single lookups, never a batch post."""
    rig.fake.faults.add(DropResponse(), methods={"POST"}, duration=1.0)
    for n in range(3):
        await rig.append_call(f"c{n}")
    await rig.drainer.drain_once()  # the batch of three phone logs; its answer is lost
    entries = await rig.store.list(state=EntryState.PENDING)
    marked = [e for e in entries if e.key.endswith(":phone_log")]
    assert len(marked) == 3
    assert all((e.last_error or "").startswith("ambiguous") for e in marked)
    rig.fake.clear_requests()
    rig.clock.advance(CONFIG.settle + 60)
    await rig.drainer.drain_once()
    assert alone(rig)[:3] == [("GET", "sn_openframe_phone_log")] * 3
    assert batches(rig) == []


@pytest.mark.anyio
async def test_one_entry_claimed_goes_as_a_plain_request(rig: Rig) -> None:
    """A batch of one would cost more than the request itself: it is sent alone."""
    await rig.append_call("c1")
    await rig.drain()
    assert_once(rig, "c1")
    assert batches(rig) == []
    assert alone(rig) == [("POST", "sn_openframe_phone_log"), ("POST", "interaction")]


def test_per_request_must_be_a_whole_number_of_one_or_more() -> None:
    """0, negative and non-whole values are refused with the field named."""
    for bad in (0, -1, 1.5, True):
        with pytest.raises(Exception, match="per_request"):
            DrainerConfig(per_request=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_entry_of_an_unknown_kind_dies_in_a_batch_as_it_does_alone(rig: Rig) -> None:
    """Claimed with creates, an entry the drainer cannot run is dead and sends nothing."""
    odd = Intent(
        call_id="odd",
        kind="delete",
        payload={"table": "interaction", "target": "interaction", "fields": {}},
        key="odd:x",
    )
    await rig.store.append([odd], rig.clock.time())
    for n in range(2):
        await rig.append_call(f"c{n}")
    await rig.drainer.drain_once()
    (dead,) = await rig.store.dead()
    assert dead.key == "odd:x"
    assert "unknown kind 'delete'" in (dead.last_error or "")
    assert not any(r.method in {"PATCH", "DELETE"} for r in rig.fake.requests)
