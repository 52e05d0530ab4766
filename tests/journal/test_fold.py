"""Folding: an update appended behind its record's unclaimed create joins the create."""

from __future__ import annotations

from typing import Any

import pytest

from callresilience.journal import EntryState, Intent, JournalStore, create_intent, update_intent

from .conftest import T0

pytestmark = pytest.mark.anyio

PENDING = EntryState.PENDING
DONE = EntryState.DONE
LEASE = 120.0


def create(call_id: str = "c1", name: str = "interaction", **fields: Any) -> Intent:
    """The create of an Interaction-like record, correlated on ``correlation_id``."""
    return create_intent(
        call_id,
        name,
        "interaction",
        {"correlation_id": call_id, "state": "new", **fields},
        correlation=("correlation_id", call_id),
    )


def update(key: str, call_id: str = "c1", target: str = "interaction", **fields: Any) -> Intent:
    """An update of the record stored under `target`."""
    return update_intent(call_id, key, "interaction", target, fields)


async def test_an_update_behind_an_unclaimed_create_is_folded_into_it(store: JournalStore) -> None:
    """The create carries the final fields; the update is done, pointing at the create."""
    (made,) = await store.append([create()], T0)
    (held, closed) = await store.append(
        [update("hold-1", state="on_hold"), update("closed", state="closed_complete", n="1")],
        T0 + 1,
    )
    assert (held.state, closed.state) == (DONE, DONE)
    assert closed.result == {"folded_into": "c1:interaction"}
    assert (closed.seq, closed.attempts, closed.lease_owner) == (3, 0, None)
    payload = (await store.get(made.entry_id)).payload
    assert payload["fields"] == {"correlation_id": "c1", "state": "closed_complete", "n": "1"}
    assert payload["folded"] == ["c1:hold-1", "c1:closed"]
    (claimed,) = await store.claim("w1", T0 + 2, 10, LEASE)
    assert claimed.entry_id == made.entry_id
    await store.complete(made.entry_id, "w1", T0 + 3)
    counts = await store.counts()
    assert (counts[PENDING], counts[EntryState.IN_FLIGHT], counts[DONE]) == (0, 0, 3)
    assert await store.oldest_pending(T0 + 4) is None


async def test_an_update_in_the_same_batch_as_its_create_is_folded(store: JournalStore) -> None:
    """The create and its update appended together give one entry to run."""
    entries = await store.append([create(), update("closed", state="closed_complete")], T0)
    assert [e.state for e in entries] == [PENDING, DONE]
    (claimed,) = await store.claim("w1", T0, 10, LEASE)
    assert claimed.payload["fields"]["state"] == "closed_complete"


async def test_a_claimed_create_is_never_folded_into(store: JournalStore) -> None:
    """In flight, retried or replayed: the create may have written, so the update stays."""
    (made,) = await store.append([create()], T0)
    await store.claim("w1", T0, 10, LEASE)
    (first,) = await store.append([update("a", state="on_hold")], T0 + 1)
    assert first.state is PENDING
    await store.retry(made.entry_id, "w1", T0 + 2, T0 + 2, "TransientError: 503")
    (second,) = await store.append([update("b", state="closed_complete")], T0 + 3)
    assert second.state is PENDING
    assert (await store.get(made.entry_id)).payload["fields"]["state"] == "new"
    assert "folded" not in (await store.get(made.entry_id)).payload


@pytest.mark.parametrize(
    "later",
    [
        pytest.param(update("x", state={"$ref": "phone_log"}), id="a $ref"),
        pytest.param(update("x", docs=[{"$ref": "phone_log"}]), id="a $ref in a list"),
        pytest.param(update("x", correlation_id="other"), id="the correlation field"),
        pytest.param(update("x", target="phone_log", state="x"), id="another record"),
        pytest.param(update("x", call_id="c3", state="x"), id="a create of another call"),
        pytest.param(
            update_intent("c1", "x", "interaction", "interaction", {"state": "x"}, group="g"),
            id="another group",
        ),
        pytest.param(Intent("c1", "update", {"target": "interaction"}, "c1:x"), id="no fields"),
        pytest.param(Intent("c1", "patch", {"fields": {}}, "c1:x"), id="another kind"),
    ],
)
async def test_updates_that_cannot_be_folded_are_appended_as_usual(
    store: JournalStore, later: Intent
) -> None:
    """References, correlation changes, other records and other shapes are never folded."""
    odd = Intent("c2", "create", create("c3").payload, "c3:interaction")  # a key of its own
    made, _ = await store.append([create(), odd], T0)
    (entry,) = await store.append([later], T0 + 1)
    assert entry.state is PENDING
    assert "folded" not in (await store.get(made.entry_id)).payload


async def test_an_unfolded_update_of_the_record_in_between_blocks_later_folds(
    store: JournalStore,
) -> None:
    """Folding past a pending update of the same record would reorder them: it is refused."""
    await store.append([create(), create(name="phone_log")], T0)
    (linked,) = await store.append([update("accepted", doc={"$ref": "phone_log"})], T0)
    (closed,) = await store.append([update("closed", state="closed_complete")], T0)
    (ended,) = await store.append([update("end", target="phone_log", end="1")], T0)
    assert (linked.state, closed.state, ended.state) == (PENDING, PENDING, DONE)


async def test_entries_after_a_folded_update_run_once_the_create_is_done(
    store: JournalStore,
) -> None:
    """The next entry not done becomes claimable past the folded one, in order."""
    await store.append([create(), update("closed", state="closed_complete")], T0)
    (after,) = await store.append([create(name="work_item")], T0)
    (first,) = await store.claim("w1", T0, 10, LEASE)
    assert await store.claim("w1", T0, 10, LEASE) == []
    await store.complete(first.entry_id, "w1", T0, results={"interaction": "a" * 32})
    (second,) = await store.claim("w1", T0, 10, LEASE)
    assert second.entry_id == after.entry_id


async def test_a_folded_update_appended_again_is_deduplicated(store: JournalStore) -> None:
    """Its key is kept: appending it again returns the done entry and folds nothing twice."""
    (made, folded) = await store.append([create(), update("closed", state="closed")], T0)
    (again,) = await store.append([update("closed", state="closed")], T0 + 1)
    assert again == folded
    assert (await store.get(made.entry_id)).payload["folded"] == ["c1:closed"]


async def test_a_fold_that_would_outgrow_the_payload_limit_is_refused(store: JournalStore) -> None:
    """Two payloads that fit alone but not together stay two entries."""
    big = "x" * 40_000
    await store.append([create(notes=big)], T0)
    (entry,) = await store.append([update("more", extra=big)], T0)
    assert entry.state is PENDING
