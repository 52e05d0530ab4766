"""The contract every journal store keeps, run against each of them."""

from __future__ import annotations

import asyncio
import json

import pytest

from callresilience import CallResilienceError, InvalidInput
from callresilience.journal import (
    Entry,
    EntryState,
    EntryStateError,
    Intent,
    JournalClosed,
    JournalStore,
    LeaseLost,
    UnknownEntry,
)

from .conftest import T0, intent

pytestmark = pytest.mark.anyio

PENDING, IN_FLIGHT, DONE, DEAD = EntryState


async def snapshot(store: JournalStore) -> list[Entry]:
    """Every entry, by id."""
    return await store.list(limit=10_000)


async def test_is_a_journal_store(store: JournalStore) -> None:
    """Both stores satisfy the JournalStore protocol and say what they are in their repr."""
    assert isinstance(store, JournalStore)
    assert type(store).__name__ in repr(store)


# -- append ------------------------------------------------------------------------------------


async def test_append_numbers_each_call_in_order(store: JournalStore) -> None:
    """Sequence numbers count per call from 1, in append order, across batches."""
    first = await store.append([intent("c1", "a"), intent("c2", "a"), intent("c1", "b")], T0)
    second = await store.append([intent("c1", "c")], T0 + 1)
    assert [(e.call_id, e.seq) for e in first + second] == [
        ("c1", 1),
        ("c2", 1),
        ("c1", 2),
        ("c1", 3),
    ]
    ids = [e.entry_id for e in first + second]
    assert ids == sorted(set(ids))


async def test_append_returns_a_pending_entry_due_now(store: JournalStore) -> None:
    """A new entry is pending, due at once, never tried, with its payload as given."""
    payload = {"short_description": "Call", "ref": {"$ref": "phone_log"}, "n": [1, 2.5, None]}
    (entry,) = await store.append([Intent("c1", "create_interaction", payload, "c1:i")], T0)
    assert entry == Entry(
        entry_id=entry.entry_id,
        call_id="c1",
        seq=1,
        kind="create_interaction",
        payload=payload,
        key="c1:i",
        state=PENDING,
        attempts=0,
        next_attempt=T0,
        lease_owner=None,
        lease_until=None,
        last_error=None,
        created=T0,
        updated=T0,
        result=None,
    )
    assert await store.get(entry.entry_id) == entry


async def test_returned_payload_is_a_copy(store: JournalStore) -> None:
    """Changing a returned payload changes nothing in the store."""
    (entry,) = await store.append([intent("c1", "a", {"list": [1]})], T0)
    entry.payload["list"].append(2)
    assert (await store.get(entry.entry_id)).payload == {"list": [1]}


async def test_payload_and_result_are_read_only_mappings_of_json(store: JournalStore) -> None:
    """An entry's payload and result read like dicts, refuse changes, and dict() them to encode."""
    payload = {"table": "interaction", "fields": {"state": "new"}, "n": [1, None]}
    (entry,) = await store.append([intent("c1", "a", payload)], T0)
    (claimed,) = await store.claim("w1", T0, 10, 30)
    done = await store.complete(claimed.entry_id, "w1", T0 + 1, result={"sys_id": "x" * 32})
    for read in (entry, claimed, done, await store.get(entry.entry_id)):
        assert read.payload == payload
        assert dict(read.payload) == payload
        assert read.payload.get("fields") == {"state": "new"}
        assert "table" in read.payload
        assert "nope" not in read.payload
        assert len(read.payload) == 3
        assert list(read.payload) == ["table", "fields", "n"]
        with pytest.raises(TypeError):
            read.payload["table"] = "x"  # type: ignore[index]
    assert done.result == {"sys_id": "x" * 32}
    assert json.loads(json.dumps(dict(done.payload))) == payload
    assert done.payload != {"table": "interaction"}
    assert done.payload != "not a mapping"


async def test_append_of_a_known_key_returns_the_existing_entry(store: JournalStore) -> None:
    """Re-appending a key (a restarted engine) stores nothing new and returns the entry."""
    (first,) = await store.append([intent("c1", "a", {"v": 1})], T0)
    await store.claim("w1", T0, 10, 30)
    (again,) = await store.append([intent("c1", "a", {"v": 2})], T0 + 5)
    assert again.entry_id == first.entry_id
    assert again.payload == {"v": 1}
    assert again.state is IN_FLIGHT
    assert len(await snapshot(store)) == 1


async def test_duplicate_keys_in_one_batch_are_stored_once(store: JournalStore) -> None:
    """The second of two equal keys in one batch returns the first's entry."""
    entries = await store.append([intent("c1", "a"), intent("c1", "a"), intent("c1", "b")], T0)
    assert entries[0] == entries[1]
    assert [e.seq for e in entries] == [1, 1, 2]


async def test_append_of_nothing_returns_nothing(store: JournalStore) -> None:
    """An empty batch is allowed and stores nothing."""
    assert await store.append([], T0) == []
    assert await snapshot(store) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("bad id!", "k", {}, "key"), "call_id"),
        (("", "k", {}, "key"), "call_id"),
        (("x" * 65, "k", {}, "key"), "call_id"),
        (("c1", "", {}, "key"), "kind"),
        (("c1", "k" * 129, {}, "key"), "kind"),
        (("c1", "k", {}, ""), "key"),
        (("c1", "k", {}, "k" * 129), "key"),
        (("c1", "k", {}, 5), "key"),
        (("c1", "k", ["not", "a", "mapping"], "key"), "payload"),
        (("c1", "k", {"when": object()}, "key"), "payload"),
        (("c1", "k", {"x": float("nan")}, "key"), "payload"),
        (("c1", "k", {"big": "x" * 70_000}, "key"), "payload"),
    ],
)
def test_a_bad_intent_is_refused_when_built(args: tuple[object, ...], field: str) -> None:
    """Intent checks its fields at construction and names the one that is wrong."""
    with pytest.raises(InvalidInput) as caught:
        Intent(*args)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_an_intent_whose_payload_contains_itself_is_refused() -> None:
    """A payload that refers to itself is refused as not JSON, with the field named."""
    payload: dict[str, object] = {"a": 1}
    payload["self"] = payload
    with pytest.raises(InvalidInput, match="contains itself") as caught:
        Intent("c1", "k", payload, "key")
    assert caught.value.field == "payload"


def test_intent_payload_json_is_compact() -> None:
    """The stored form is compact UTF-8 JSON."""
    assert Intent("c1", "k", {"a": "é", "b": [1]}, "key").payload_json == '{"a":"é","b":[1]}'


@pytest.mark.parametrize(
    ("intents", "now"),
    [
        ([intent("c1", "a"), "not an intent"], T0),
        (intent("c1", "a"), T0),
        ("c1:a", T0),
        (42, T0),
        ([intent("c1", "a")], float("nan")),
        ([intent("c1", "a")], "now"),
        ([intent("c1", "a")], True),
    ],
)
async def test_a_bad_batch_stores_nothing(
    store: JournalStore, intents: object, now: object
) -> None:
    """Bad input raises InvalidInput and stores nothing of the batch."""
    with pytest.raises(InvalidInput):
        await store.append(intents, now)  # type: ignore[arg-type]
    assert await snapshot(store) == []


# -- claim -------------------------------------------------------------------------------------


async def test_claim_leases_the_oldest_entries_first(store: JournalStore) -> None:
    """Claims go by next_attempt then entry_id, up to the limit, each leased to the owner."""
    late = await store.append([intent("c3", "a")], T0 + 2)
    early = await store.append([intent("c1", "a"), intent("c2", "a")], T0)
    claimed = await store.claim("w1", T0 + 5, 2, 30)
    assert [e.entry_id for e in claimed] == [e.entry_id for e in early]
    for entry in claimed:
        assert entry.state is IN_FLIGHT
        assert entry.lease_owner == "w1"
        assert entry.lease_until == T0 + 35
        assert entry.attempts == 1
        assert entry.updated == T0 + 5
        assert await store.get(entry.entry_id) == entry
    assert [e.entry_id for e in await store.claim("w1", T0 + 5, 5, 30)] == [late[0].entry_id]
    assert await store.claim("w1", T0 + 5, 5, 30) == []


async def test_an_entry_not_yet_due_is_not_claimed(store: JournalStore) -> None:
    """A pending entry waits until its next_attempt."""
    await store.append([intent("c1", "a")], T0 + 10)
    assert await store.claim("w1", T0 + 9.999, 5, 30) == []
    assert len(await store.claim("w1", T0 + 10, 5, 30)) == 1


async def test_the_next_entry_of_a_call_waits_for_the_previous(store: JournalStore) -> None:
    """Entry n+1 of a call is not claimable until entry n is done."""
    first, second, third = await store.append(
        [intent("c1", "a"), intent("c1", "b"), intent("c1", "c")], T0
    )
    (claimed,) = await store.claim("w1", T0, 10, 30)
    assert claimed.entry_id == first.entry_id
    assert await store.claim("w2", T0 + 1, 10, 30) == []
    await store.complete(first.entry_id, "w1", T0 + 1)
    (claimed,) = await store.claim("w1", T0 + 1, 10, 30)
    assert claimed.entry_id == second.entry_id
    await store.complete(second.entry_id, "w1", T0 + 2)
    assert [e.entry_id for e in await store.claim("w1", T0 + 2, 10, 30)] == [third.entry_id]


async def test_a_retried_entry_holds_back_the_next(store: JournalStore) -> None:
    """While entry n waits to retry, entry n+1 of the same call waits too."""
    first, _ = await store.append([intent("c1", "a"), intent("c1", "b")], T0)
    await store.claim("w1", T0, 10, 30)
    retried = await store.retry(first.entry_id, "w1", T0 + 1, T0 + 60, "timeout")
    assert retried.state is PENDING
    assert retried.next_attempt == T0 + 60
    assert retried.last_error == "timeout"
    assert retried.lease_owner is None
    assert retried.lease_until is None
    assert await store.claim("w1", T0 + 59, 10, 30) == []
    (again,) = await store.claim("w1", T0 + 60, 10, 30)
    assert again.entry_id == first.entry_id
    assert again.attempts == 2
    assert again.last_error == "timeout"


async def test_a_dead_entry_blocks_its_call_until_replayed(store: JournalStore) -> None:
    """A dead entry n holds back n+1; replay makes n runnable again, and n+1 after it."""
    first, second = await store.append([intent("c1", "a"), intent("c1", "b")], T0)
    (other,) = await store.append([intent("c2", "a")], T0)
    await store.claim("w1", T0, 1, 30)
    killed = await store.kill(first.entry_id, "w1", T0 + 1, "400 Bad Request")
    assert killed.state is DEAD
    assert killed.last_error == "400 Bad Request"
    assert killed.lease_owner is None
    claimed = await store.claim("w1", T0 + 100, 10, 30)
    assert [e.entry_id for e in claimed] == [other.entry_id]
    await store.complete(other.entry_id, "w1", T0 + 100)
    replayed = await store.replay(first.entry_id, T0 + 200)
    assert replayed.state is PENDING
    assert replayed.attempts == 0
    assert replayed.next_attempt == T0 + 200
    assert replayed.last_error == "400 Bad Request"
    assert await store.claim("w1", T0 + 199, 10, 30) == []
    (again,) = await store.claim("w1", T0 + 200, 10, 30)
    assert again.entry_id == first.entry_id
    assert again.attempts == 1
    done = await store.complete(first.entry_id, "w1", T0 + 201)
    assert done.last_error is None
    assert [e.entry_id for e in await store.claim("w1", T0 + 201, 10, 30)] == [second.entry_id]


async def test_an_entry_appended_behind_a_dead_one_waits(store: JournalStore) -> None:
    """A later append to a call whose entry is dead is held back too."""
    (first,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 1, 30)
    await store.kill(first.entry_id, "w1", T0, "refused")
    (late,) = await store.append([intent("c1", "b")], T0 + 1)
    assert late.seq == 2
    assert await store.claim("w1", T0 + 10, 10, 30) == []


async def test_an_entry_appended_after_the_call_finished_runs(store: JournalStore) -> None:
    """Appending to a call whose entries are all done makes the new one claimable at once."""
    (first,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 1, 30)
    await store.complete(first.entry_id, "w1", T0)
    (late,) = await store.append([intent("c1", "b")], T0 + 1)
    assert [e.entry_id for e in await store.claim("w1", T0 + 1, 10, 30)] == [late.entry_id]


async def test_an_expired_lease_lets_another_worker_claim(store: JournalStore) -> None:
    """After lease_until the entry is claimable again, with attempts + 1."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    assert await store.claim("w2", T0 + 29.5, 10, 30) == []
    (taken,) = await store.claim("w2", T0 + 30, 10, 30)
    assert taken.entry_id == entry.entry_id
    assert taken.lease_owner == "w2"
    assert taken.lease_until == T0 + 60
    assert taken.attempts == 2
    assert "lease of w1 ran out" in (taken.last_error or "")
    assert (await store.get(entry.entry_id)).last_error == taken.last_error


@pytest.mark.parametrize("operation", ["complete", "retry", "kill"])
async def test_the_old_owner_cannot_finish_a_taken_entry(
    store: JournalStore, operation: str
) -> None:
    """The first worker's outcome raises LeaseLost and changes nothing."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.claim("w2", T0 + 31, 10, 30)
    before = await snapshot(store)
    with pytest.raises(LeaseLost) as caught:
        await finish(store, operation, entry.entry_id, "w1", T0 + 32)
    assert caught.value.entry_id == entry.entry_id
    assert caught.value.owner == "w1"
    assert "'w2' claimed it" in str(caught.value)
    assert isinstance(caught.value, CallResilienceError)
    assert await snapshot(store) == before
    assert await store.call_results("c1") == {}
    assert (await finish(store, operation, entry.entry_id, "w2", T0 + 33)).lease_owner is None


@pytest.mark.parametrize("operation", ["complete", "retry", "kill"])
async def test_an_entry_not_in_flight_cannot_be_finished(
    store: JournalStore, operation: str
) -> None:
    """Finishing a pending or already finished entry raises LeaseLost and changes nothing."""
    first, second = await store.append([intent("c1", "a"), intent("c2", "a")], T0)
    await store.claim("w1", T0, 1, 30)
    await store.complete(first.entry_id, "w1", T0 + 1)
    before = await snapshot(store)
    for entry_id in (first.entry_id, second.entry_id):
        with pytest.raises(LeaseLost, match="no longer in flight"):
            await finish(store, operation, entry_id, "w1", T0 + 2)
    assert await snapshot(store) == before


async def test_a_worker_may_finish_after_its_lease_ran_out(store: JournalStore) -> None:
    """An expired lease that nobody took over still lets its owner finish."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    done = await store.complete(entry.entry_id, "w1", T0 + 100)
    assert done.state is DONE


async def test_two_workers_never_claim_the_same_entry(store: JournalStore) -> None:
    """Concurrent claims by two owners split the entries between them."""
    await store.append([intent(f"c{n}", "a") for n in range(60)], T0)
    batches = await asyncio.gather(
        *(store.claim(f"w{n % 2}", T0, 7, 30) for n in range(12)),
    )
    ids = [e.entry_id for batch in batches for e in batch]
    assert len(ids) == len(set(ids)) == 60


async def test_finishing_an_unknown_entry_raises(store: JournalStore) -> None:
    """Operations on an id that is not there raise UnknownEntry."""
    await store.append([intent("c1", "a")], T0)
    for call in (
        store.get(999),
        store.complete(999, "w1", T0),
        store.retry(999, "w1", T0, T0, "x"),
        store.kill(999, "w1", T0, "x"),
        store.replay(999, T0),
    ):
        with pytest.raises(UnknownEntry) as caught:
            await call
        assert caught.value.entry_id == 999
        assert isinstance(caught.value, LookupError)


# -- results -----------------------------------------------------------------------------------


async def test_results_merge_per_call(store: JournalStore) -> None:
    """complete() keeps its result on the entry and merges sys_ids into the call's results."""
    first, second = await store.append([intent("c1", "a"), intent("c1", "b")], T0)
    (other,) = await store.append([intent("c2", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    done = await store.complete(
        first.entry_id, "w1", T0 + 1, {"sys_id": "a" * 32, "number": "PL1"}, {"phone_log": "p1"}
    )
    assert done.result == {"sys_id": "a" * 32, "number": "PL1"}
    assert done.state is DONE
    await store.complete(other.entry_id, "w1", T0 + 1, results={"phone_log": "p2"})
    await store.claim("w1", T0 + 1, 10, 30)
    await store.complete(second.entry_id, "w1", T0 + 2, None, {"interaction": "i1"})
    assert await store.call_results("c1") == {"phone_log": "p1", "interaction": "i1"}
    assert await store.call_results("c2") == {"phone_log": "p2"}
    assert await store.call_results("c3") == {}
    assert (await store.get(second.entry_id)).result is None


async def test_a_later_result_replaces_an_earlier_name(store: JournalStore) -> None:
    """Merging a name twice keeps the latest sys_id."""
    first, second = await store.append([intent("c1", "a"), intent("c1", "b")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.complete(first.entry_id, "w1", T0, results={"x": "1"})
    await store.claim("w1", T0, 10, 30)
    await store.complete(second.entry_id, "w1", T0, results={"x": "2", "y": "3"})
    assert await store.call_results("c1") == {"x": "2", "y": "3"}


@pytest.mark.parametrize(
    ("result", "results"),
    [
        ({"x": object()}, None),
        (["not", "a", "mapping"], None),
        (None, {"phone_log": 5}),
        (None, {"": "x"}),
        (None, ["phone_log"]),
        (None, {"phone_log": "x" * 257}),
    ],
)
async def test_a_bad_result_changes_nothing(
    store: JournalStore, result: object, results: object
) -> None:
    """complete() with a bad result or results raises InvalidInput; the entry stays in flight."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    before = await snapshot(store)
    with pytest.raises(InvalidInput):
        await store.complete(entry.entry_id, "w1", T0, result, results)  # type: ignore[arg-type]
    assert await snapshot(store) == before
    assert await store.call_results("c1") == {}


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "now", "limit", "lease"),
    [
        ("", T0, 1, 30),
        ("w" * 129, T0, 1, 30),
        (None, T0, 1, 30),
        ("w1", float("inf"), 1, 30),
        ("w1", T0, 0, 30),
        ("w1", T0, 1.5, 30),
        ("w1", T0, True, 30),
        ("w1", T0, 1, 0),
        ("w1", T0, 1, -5),
    ],
)
async def test_a_bad_claim_changes_nothing(
    store: JournalStore, owner: object, now: object, limit: object, lease: object
) -> None:
    """Bad claim arguments raise InvalidInput and lease nothing."""
    await store.append([intent("c1", "a")], T0)
    before = await snapshot(store)
    with pytest.raises(InvalidInput):
        await store.claim(owner, now, limit, lease)  # type: ignore[arg-type]
    assert await snapshot(store) == before


async def test_bad_finishing_arguments_change_nothing(store: JournalStore) -> None:
    """Bad ids, times and error texts raise InvalidInput before anything changes."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    before = await snapshot(store)
    for call in (
        store.get(0),
        store.get("1"),  # type: ignore[arg-type]
        store.complete(entry.entry_id, "w1", float("nan")),
        store.retry(entry.entry_id, "w1", T0, float("nan"), "x"),
        store.retry(entry.entry_id, "w1", T0, T0, None),  # type: ignore[arg-type]
        store.kill(entry.entry_id, "", T0, "x"),
        store.replay(entry.entry_id, "now"),  # type: ignore[arg-type]
        store.call_results("bad id!"),
        store.list(state="pending"),  # type: ignore[arg-type]
        store.list(limit=-1),
        store.list(offset=-1),
        store.list(call_id="bad id!"),
        store.oldest_pending(float("nan")),
        store.purge_done(-float("inf"), T0),
    ):
        with pytest.raises(InvalidInput):
            await call
    assert await snapshot(store) == before


async def test_a_long_error_is_cut_not_refused(store: JournalStore) -> None:
    """Error texts over 4096 characters are stored cut, ending in '...'."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    retried = await store.retry(entry.entry_id, "w1", T0, T0, "e" * 10_000)
    assert retried.last_error is not None
    assert len(retried.last_error) == 4096
    assert retried.last_error.endswith("...")


# -- the operator's view -----------------------------------------------------------------------


async def test_counts_list_and_dead(store: JournalStore) -> None:
    """counts() has every state; list() filters by state and call and pages; dead() lists dead."""
    assert await store.counts() == {PENDING: 0, IN_FLIGHT: 0, DONE: 0, DEAD: 0}
    entries = await store.append([intent(f"c{n}", "a") for n in range(5)], T0)
    await store.append([intent("c0", "b")], T0)
    ids = [e.entry_id for e in entries]
    await store.claim("w1", T0, 3, 30)
    await store.complete(ids[0], "w1", T0)
    await store.kill(ids[1], "w1", T0, "403")
    assert await store.counts() == {PENDING: 3, IN_FLIGHT: 1, DONE: 1, DEAD: 1}
    assert [e.entry_id for e in await store.list(state=PENDING)] == [ids[3], ids[4], ids[4] + 1]
    assert [e.seq for e in await store.list(call_id="c0")] == [1, 2]
    assert [e.entry_id for e in await store.list(call_id="c0", state=DONE)] == [ids[0]]
    assert await store.list(call_id="nope") == []
    assert [e.entry_id for e in await store.list(limit=2, offset=1)] == ids[1:3]
    assert await store.list(limit=0) == []
    assert [e.entry_id for e in await store.dead()] == [ids[1]]
    assert await store.dead(limit=0) == []


async def test_oldest_pending_is_the_age_of_the_oldest_unfinished(store: JournalStore) -> None:
    """oldest_pending() ignores done and dead entries; None when nothing waits."""
    assert await store.oldest_pending(T0) is None
    first, second, third = await store.append(
        [intent("c1", "a"), intent("c2", "a"), intent("c3", "a")], T0
    )
    await store.append([intent("c4", "a")], T0 + 10)
    assert await store.oldest_pending(T0 + 15) == 15
    await store.claim("w1", T0 + 20, 3, 30)
    assert await store.oldest_pending(T0 + 20) == 20  # in flight still counts
    await store.complete(first.entry_id, "w1", T0 + 20)
    await store.kill(second.entry_id, "w1", T0 + 20, "x")
    await store.complete(third.entry_id, "w1", T0 + 20)
    assert await store.oldest_pending(T0 + 20) == 10


async def test_replaying_a_live_entry_is_refused(store: JournalStore) -> None:
    """Only dead entries can be replayed; others raise EntryStateError and stay as they are."""
    first, second = await store.append([intent("c1", "a"), intent("c2", "a")], T0)
    await store.claim("w1", T0, 1, 30)
    before = await snapshot(store)
    for entry_id in (first.entry_id, second.entry_id):
        with pytest.raises(EntryStateError, match="only dead entries"):
            await store.replay(entry_id, T0)
    await store.complete(first.entry_id, "w1", T0)
    with pytest.raises(EntryStateError, match="it is done"):
        await store.replay(first.entry_id, T0)
    assert len(await snapshot(store)) == len(before)


async def test_purge_deletes_only_old_entries_of_finished_calls(store: JournalStore) -> None:
    """purge_done() keeps calls with work left and recent entries; results go with the call."""
    a1, a2 = await store.append([intent("a", "1"), intent("a", "2")], T0)
    (b1,) = await store.append([intent("b", "1")], T0)
    c1, c2 = await store.append([intent("c", "1"), intent("c", "2")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.complete(a1.entry_id, "w1", T0, results={"x": "1"})
    await store.complete(b1.entry_id, "w1", T0, results={"x": "2"})
    await store.complete(c1.entry_id, "w1", T0, results={"x": "3"})
    await store.claim("w1", T0, 10, 30)
    await store.complete(a2.entry_id, "w1", T0 + 100)
    # c2 stays in flight: call c keeps every entry whatever their age.
    assert await store.purge_done(50, T0 + 120) == 2  # a1 and b1; a2 is too recent
    assert [e.key for e in await snapshot(store)] == ["a:2", "c:1", "c:2"]
    assert await store.call_results("a") == {"x": "1"}
    assert await store.call_results("b") == {}
    assert await store.call_results("c") == {"x": "3"}
    assert await store.purge_done(20, T0 + 120) == 1
    assert await store.call_results("a") == {}
    assert await store.purge_done(0, T0 + 1000) == 0
    # A purged call starts again from seq 1; a purged key may be appended again.
    (again,) = await store.append([intent("a", "1")], T0 + 200)
    assert again.seq == 1
    assert again.entry_id > c2.entry_id


async def test_purge_keeps_a_call_with_a_dead_entry(store: JournalStore) -> None:
    """A call with a dead entry keeps its done entries (the dead one may be replayed)."""
    first, second = await store.append([intent("a", "1"), intent("a", "2")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.complete(first.entry_id, "w1", T0)
    await store.claim("w1", T0, 10, 30)
    await store.kill(second.entry_id, "w1", T0, "x")
    assert await store.purge_done(0, T0 + 100) == 0
    assert len(await snapshot(store)) == 2


async def test_a_call_partly_purged_keeps_numbering(store: JournalStore) -> None:
    """After an older done entry is purged, the call's next entry still follows the last."""
    first, second = await store.append([intent("a", "1"), intent("a", "2")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.complete(first.entry_id, "w1", T0)
    await store.claim("w1", T0, 10, 30)
    await store.complete(second.entry_id, "w1", T0 + 100)
    assert await store.purge_done(50, T0 + 100) == 1
    (third,) = await store.append([intent("a", "3")], T0 + 101)
    assert third.seq == 3
    assert [e.entry_id for e in await store.claim("w1", T0 + 101, 10, 30)] == [third.entry_id]


# -- closing -----------------------------------------------------------------------------------


async def test_a_closed_store_refuses_everything(store: JournalStore) -> None:
    """After close() every operation raises JournalClosed; closing again is harmless."""
    await store.append([intent("c1", "a")], T0)
    await store.close()
    await store.close()
    for call in (
        store.append([intent("c1", "b")], T0),
        store.claim("w1", T0, 1, 30),
        store.get(1),
        store.counts(),
        store.list(),
    ):
        with pytest.raises(JournalClosed, match="closed"):
            await call


async def finish(
    store: JournalStore, operation: str, entry_id: int, owner: str, now: float
) -> Entry:
    """Run complete, retry or kill with plausible arguments."""
    if operation == "complete":
        return await store.complete(entry_id, owner, now, {"ok": True}, {"phone_log": "p"})
    if operation == "retry":
        return await store.retry(entry_id, owner, now, now + 10, "503")
    return await store.kill(entry_id, owner, now, "400")


# -- groups ------------------------------------------------------------------------------------


def grouped(call_id: str, name: str, group: str) -> Intent:
    """An intent of `group`."""
    return Intent(call_id, f"create_{name}", {"name": name}, f"{call_id}:{name}", group=group)


async def test_a_claim_skips_held_groups_until_released(store: JournalStore) -> None:
    """Entries of a skipped group stay pending; the next claim without the skip takes them."""
    eu, us, plain = await store.append(
        [grouped("c1", "a", "region:eu"), grouped("c2", "a", "region:us"), intent("c3", "a")], T0
    )
    assert (eu.group, plain.group) == ("region:eu", "")
    claimed = await store.claim("w1", T0, 10, 30, skip_groups={"region:eu"})
    assert [e.entry_id for e in claimed] == [us.entry_id, plain.entry_id]
    assert (await store.get(eu.entry_id)).state is PENDING
    assert await store.claim("w1", T0 + 1, 10, 30, skip_groups={"region:eu"}) == []
    (again,) = await store.claim("w1", T0 + 2, 10, 30)
    assert (again.entry_id, again.group) == (eu.entry_id, "region:eu")


async def test_a_held_group_holds_the_later_entries_of_its_calls(store: JournalStore) -> None:
    """A call's next entry waits behind a held one, whatever its own group."""
    first, second = await store.append(
        [grouped("c1", "a", "region:eu"), grouped("c1", "b", "region:us")], T0
    )
    assert await store.claim("w1", T0, 10, 30, skip_groups=["region:eu"]) == []
    (taken,) = await store.claim("w1", T0, 10, 30)
    await store.complete(taken.entry_id, "w1", T0)
    assert [e.entry_id for e in await store.claim("w1", T0, 10, 30)] == [second.entry_id]
    assert taken.entry_id == first.entry_id


async def test_an_expired_lease_of_a_held_group_is_not_taken_over(store: JournalStore) -> None:
    """An in-flight entry of a skipped group whose lease ran out waits for the release."""
    (entry,) = await store.append([grouped("c1", "a", "g1")], T0)
    await store.claim("w1", T0, 10, 30)
    assert await store.claim("w2", T0 + 60, 10, 30, skip_groups={"g1"}) == []
    (taken,) = await store.claim("w2", T0 + 60, 10, 30)
    assert (taken.entry_id, taken.lease_owner) == (entry.entry_id, "w2")


async def test_bad_groups_are_refused_and_change_nothing(store: JournalStore) -> None:
    """A group that is not a short string, or a skip list that is a bare string, is refused."""
    with pytest.raises(InvalidInput, match="group"):
        grouped("c1", "a", "x" * 300)
    await store.append([intent("c1", "a")], T0)
    before = await snapshot(store)
    with pytest.raises(InvalidInput, match="skip_groups"):
        await store.claim("w1", T0, 10, 30, skip_groups="region:eu")
    with pytest.raises(InvalidInput, match="skip_groups"):
        await store.claim("w1", T0, 10, 30, skip_groups=[1])  # type: ignore[list-item]
    assert await snapshot(store) == before


async def test_reschedule_brings_pending_entries_forward_and_never_back(
    store: JournalStore,
) -> None:
    """Pending entries due later move to the time given; earlier ones keep theirs."""
    late, early = await store.append([intent("c1", "a"), intent("c2", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.retry(late.entry_id, "w1", T0, T0 + 60, "TransientError: 503")
    await store.retry(early.entry_id, "w1", T0, T0 + 5, "TransientError: 503")
    assert await store.reschedule([late.entry_id, early.entry_id], T0 + 20) == 1
    assert (await store.get(late.entry_id)).next_attempt == T0 + 20
    assert (await store.get(early.entry_id)).next_attempt == T0 + 5
    claimed = await store.claim("w2", T0 + 20, 10, 30)
    assert sorted(e.entry_id for e in claimed) == sorted([late.entry_id, early.entry_id])


async def test_rescheduled_entries_are_claimed_once_at_their_new_time(
    store: JournalStore,
) -> None:
    """A moved head is claimed when the new time comes, once, and not again at the old one."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    await store.claim("w1", T0, 10, 30)
    await store.retry(entry.entry_id, "w1", T0, T0 + 60, "TransientError: 503")
    assert await store.claim("w2", T0 + 10, 10, 30) == []
    assert await store.reschedule([entry.entry_id], T0 + 10) == 1
    (claimed,) = await store.claim("w2", T0 + 10, 10, 300)
    assert claimed.entry_id == entry.entry_id
    assert await store.claim("w3", T0 + 70, 10, 30) == []  # the old time is gone
    assert (await store.get(entry.entry_id)).lease_owner == "w2"


async def test_reschedule_leaves_entries_that_are_not_pending_alone(store: JournalStore) -> None:
    """In flight, done, dead and unknown entries are not touched; nothing is counted."""
    flying, done, dead = await store.append(
        [intent("c1", "a"), intent("c2", "a"), intent("c3", "a")], T0
    )
    await store.claim("w1", T0, 10, 30)
    await store.complete(done.entry_id, "w1", T0, result=None, results={})
    await store.kill(dead.entry_id, "w1", T0, "PermanentError: 400")
    before = await snapshot(store)
    ids = [flying.entry_id, done.entry_id, dead.entry_id, 999_999]
    assert await store.reschedule(ids, T0 - 100) == 0
    assert await snapshot(store) == before


async def test_reschedule_of_a_later_entry_of_a_call_keeps_the_call_order(
    store: JournalStore,
) -> None:
    """An entry behind an unfinished one of its call stays behind it, whatever its time."""
    first, second = await store.append([intent("c1", "a"), intent("c1", "b")], T0)
    await store.claim("w1", T0, 10, 30)
    assert await store.reschedule([second.entry_id], T0) == 0  # due already
    assert await store.claim("w2", T0 + 1, 10, 30) == []  # still behind the first
    await store.complete(first.entry_id, "w1", T0 + 1, result=None, results={})
    (claimed,) = await store.claim("w2", T0 + 1, 10, 30)
    assert claimed.entry_id == second.entry_id


async def test_reschedule_refuses_bad_arguments(store: JournalStore) -> None:
    """A bad id or time raises InvalidInput and changes nothing."""
    (entry,) = await store.append([intent("c1", "a")], T0)
    before = await snapshot(store)
    with pytest.raises(InvalidInput):
        await store.reschedule([0], T0)
    with pytest.raises(InvalidInput):
        await store.reschedule([entry.entry_id], float("nan"))
    assert await snapshot(store) == before
