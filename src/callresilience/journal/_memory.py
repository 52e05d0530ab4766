"""The in-memory journal: the whole contract, nothing durable.

For tests, and for deployments that accept losing unsent writes when the process stops.
"""

from __future__ import annotations

import builtins
import heapq
import json
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import attrs

from .._model import check_identifier
from . import _rules
from ._fold import create_key, fold, folded_result, open_create
from ._types import (
    Entry,
    EntryState,
    Intent,
    JsonObject,
    check_count,
    check_duration,
    check_entry_id,
    check_groups,
    check_intents,
    check_owner,
    check_results,
    check_state,
    check_time,
    clip_error,
    encode_json,
)

__all__ = ["MemoryJournal"]


@attrs.define
class _Row:
    """One entry, mutable; the JSON stays encoded so nobody can change it from outside."""

    entry_id: int
    call_id: str
    seq: int
    kind: str
    payload: str
    key: str
    state: EntryState
    next_attempt: float
    created: float
    updated: float
    #: True when every earlier entry of the call is done and this one is pending or in
    #: flight: only such entries are ever claimed.
    head: bool
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    last_error: str | None = None
    result: str | None = None
    group: str = ""

    def entry(self) -> Entry:
        return Entry(
            entry_id=self.entry_id,
            call_id=self.call_id,
            seq=self.seq,
            kind=self.kind,
            payload=JsonObject(self.payload),
            key=self.key,
            state=self.state,
            attempts=self.attempts,
            next_attempt=self.next_attempt,
            lease_owner=self.lease_owner,
            lease_until=self.lease_until,
            last_error=self.last_error,
            created=self.created,
            updated=self.updated,
            result=None if self.result is None else JsonObject(self.result),
            group=self.group,
        )


@attrs.define
class _Call:
    ids: builtins.list[int] = attrs.Factory(builtins.list)
    #: How many of its entries are not done (pending, in flight or dead).
    open: int = 0
    results: dict[str, str] = attrs.Factory(dict)


class MemoryJournal:
    """A `JournalStore` held in memory; everything is lost when the process stops.

    Claims cost O(limit log n) with a heap of the runnable entries, so a large backlog stays
    cheap; the operator queries scan.

    Example::

        async with MemoryJournal() as journal:
            await journal.append([Intent("c1", "create_phone_log", {}, "c1:phone_log")], now)
    """

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}
        self._keys: dict[str, int] = {}
        self._calls: dict[str, _Call] = {}
        # Pending heads by (next_attempt, entry_id); stale items are skipped when popped.
        self._due: builtins.list[tuple[float, int]] = []
        self._leased: dict[int, _Row] = {}
        # Pending heads of skipped groups, out of the heap until a claim no longer skips them.
        self._parked: dict[str, builtins.list[_Row]] = {}
        self._next_id = 1
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryJournal(entries={len(self._rows)})"

    def _check_open(self) -> None:
        if self._closed:
            raise _rules.closed()

    def _row(self, entry_id: int) -> _Row:
        row = self._rows.get(check_entry_id(entry_id))
        if row is None:
            raise _rules.missing(entry_id)
        return row

    def _make_head(self, row: _Row) -> None:
        row.head = True
        heapq.heappush(self._due, (row.next_attempt, row.entry_id))

    async def append(self, intents: Sequence[Intent], now: float) -> builtins.list[Entry]:
        """Store intents; see `JournalStore.append`."""
        self._check_open()
        batch = check_intents(intents)
        now = check_time("now", now)
        out: builtins.list[Entry] = []
        for intent in batch:
            existing = self._keys.get(intent.key)
            if existing is not None:
                out.append(self._rows[existing].entry())
                continue
            call = self._calls.setdefault(intent.call_id, _Call())
            seq = self._rows[call.ids[-1]].seq + 1 if call.ids else 1
            into = self._fold(call, intent)
            row = _Row(
                entry_id=self._next_id,
                call_id=intent.call_id,
                seq=seq,
                kind=intent.kind,
                payload=intent.payload_json,
                key=intent.key,
                state=EntryState.PENDING if into is None else EntryState.DONE,
                next_attempt=now,
                created=now,
                updated=now,
                head=False,
                group=intent.group,
                result=None if into is None else folded_result(into),
            )
            self._next_id += 1
            self._rows[row.entry_id] = row
            self._keys[row.key] = row.entry_id
            call.ids.append(row.entry_id)
            if into is None:
                if call.open == 0:
                    self._make_head(row)
                call.open += 1
            out.append(row.entry())
        return out

    def _fold(self, call: _Call, intent: Intent) -> str | None:
        """Fold an update into its record's unclaimed create; return the create's key if so."""
        key = create_key(intent)
        entry_id = None if key is None else self._keys.get(key)
        if entry_id is None:
            return None
        create = self._rows[entry_id]
        if (
            create.call_id != intent.call_id
            or create.group != intent.group
            or not open_create(create.kind, create.state, create.attempts, create.last_error)
        ):
            return None
        later = call.ids[call.ids.index(entry_id) + 1 :]
        between = [
            (r.kind, r.payload)
            for r in map(self._rows.__getitem__, later)
            if r.state is not EntryState.DONE
        ]
        payload = fold(json.loads(create.payload), intent, between)
        if payload is None:
            return None
        create.payload = payload
        return create.key

    async def claim(
        self,
        owner: str,
        now: float,
        limit: int,
        lease: float,
        *,
        skip_groups: Collection[str] = frozenset(),
    ) -> builtins.list[Entry]:
        """Lease runnable entries to `owner`; see `JournalStore.claim`."""
        self._check_open()
        owner = check_owner(owner)
        now = check_time("now", now)
        limit = check_count("limit", limit, 1)
        lease = check_duration("lease", lease)
        skip = check_groups(skip_groups)
        for group in [g for g in self._parked if g not in skip]:
            for row in self._parked.pop(group):
                heapq.heappush(self._due, (row.next_attempt, row.entry_id))
        # The `limit` oldest due pending heads, plus every expired lease, hold the answer. The
        # heap holds exactly the pending heads not parked: each path that makes one pushes it
        # once (append, complete, retry, replay, unparking), and only a claim pops.
        candidates: builtins.list[_Row] = []
        while self._due and self._due[0][0] <= now and len(candidates) < limit:
            _, entry_id = heapq.heappop(self._due)
            row = self._rows[entry_id]
            if row.group in skip:
                self._parked.setdefault(row.group, []).append(row)
            else:
                candidates.append(row)
        candidates.extend(
            row
            for row in self._leased.values()
            if row.lease_until is not None and row.lease_until <= now and row.group not in skip
        )
        candidates.sort(key=lambda r: (r.next_attempt, r.entry_id))
        taken, rest = candidates[:limit], candidates[limit:]
        for row in rest:
            if row.state is EntryState.PENDING:
                heapq.heappush(self._due, (row.next_attempt, row.entry_id))
        for row in taken:
            if row.state is EntryState.IN_FLIGHT:
                row.last_error = _rules.takeover_note(row.lease_owner, row.lease_until)
            row.state = EntryState.IN_FLIGHT
            row.lease_owner = owner
            row.lease_until = now + lease
            row.attempts += 1
            row.updated = now
            self._leased[row.entry_id] = row
        return [row.entry() for row in taken]

    def _finish(self, operation: str, entry_id: int, owner: str) -> _Row:
        """Return the entry if `owner` holds it in flight, else raise `LeaseLost`."""
        self._check_open()
        owner = check_owner(owner)
        row = self._row(entry_id)
        _rules.require_lease(operation, row.entry_id, owner, row.state, row.lease_owner)
        return row

    def _land(self, row: _Row, state: EntryState, now: float) -> None:
        del self._leased[row.entry_id]
        row.state = state
        row.lease_owner = None
        row.lease_until = None
        row.updated = now

    async def complete(
        self,
        entry_id: int,
        owner: str,
        now: float,
        result: Mapping[str, Any] | None = None,
        results: Mapping[str, str] | None = None,
    ) -> Entry:
        """Mark an in-flight entry done; see `JournalStore.complete`."""
        now = check_time("now", now)
        result_json = None if result is None else encode_json("result", result)
        merged = check_results(results)
        row = self._finish("complete", entry_id, owner)
        self._land(row, EntryState.DONE, now)
        row.head = False
        row.result = result_json
        row.last_error = None
        call = self._calls[row.call_id]
        call.open -= 1
        call.results.update(merged)
        # The next entry not done yet becomes claimable (folded updates are done already).
        for later in call.ids[call.ids.index(row.entry_id) + 1 :]:
            if self._rows[later].state is not EntryState.DONE:
                self._make_head(self._rows[later])
                break
        return row.entry()

    async def retry(
        self, entry_id: int, owner: str, now: float, next_attempt: float, error: str
    ) -> Entry:
        """Send an in-flight entry back to pending; see `JournalStore.retry`."""
        now = check_time("now", now)
        next_attempt = check_time("next_attempt", next_attempt)
        error = clip_error(error)
        row = self._finish("retry", entry_id, owner)
        self._land(row, EntryState.PENDING, now)
        row.next_attempt = next_attempt
        row.last_error = error
        heapq.heappush(self._due, (row.next_attempt, row.entry_id))
        return row.entry()

    async def kill(self, entry_id: int, owner: str, now: float, error: str) -> Entry:
        """Mark an in-flight entry dead; see `JournalStore.kill`."""
        now = check_time("now", now)
        error = clip_error(error)
        row = self._finish("kill", entry_id, owner)
        self._land(row, EntryState.DEAD, now)
        row.head = False
        row.last_error = error
        return row.entry()

    async def reschedule(self, entry_ids: Collection[int], next_attempt: float) -> int:
        """Bring pending entries forward; see `JournalStore.reschedule`."""
        self._check_open()
        next_attempt = check_time("next_attempt", next_attempt)
        moved = 0
        for entry_id in {check_entry_id(i) for i in entry_ids}:
            row = self._rows.get(entry_id)
            if (
                row is not None
                and row.state is EntryState.PENDING
                and row.next_attempt > next_attempt
            ):
                row.next_attempt = next_attempt
                moved += 1
        if moved:
            # The heap holds each pending head once, keyed by its time: key them again.
            self._due = [(self._rows[entry_id].next_attempt, entry_id) for _, entry_id in self._due]
            heapq.heapify(self._due)
        return moved

    async def call_results(self, call_id: str) -> dict[str, str]:
        """Return a call's merged results; see `JournalStore.call_results`."""
        self._check_open()
        call = self._calls.get(check_identifier("call_id", call_id))
        return dict(call.results) if call else {}

    async def get(self, entry_id: int) -> Entry:
        """Return one entry; see `JournalStore.get`."""
        self._check_open()
        return self._row(entry_id).entry()

    async def list(
        self,
        *,
        state: EntryState | None = None,
        call_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Entry]:
        """Return entries by id, filtered; see `JournalStore.list`."""
        self._check_open()
        state = check_state(state)
        limit = check_count("limit", limit, 0)
        offset = check_count("offset", offset, 0)
        if call_id is not None:
            call = self._calls.get(check_identifier("call_id", call_id))
            rows = [self._rows[i] for i in call.ids] if call else []
        else:
            rows = builtins.list(self._rows.values())
        chosen = [row for row in rows if state is None or row.state is state]
        return [row.entry() for row in chosen[offset : offset + limit]]

    async def counts(self) -> dict[EntryState, int]:
        """Return the number of entries in each state; see `JournalStore.counts`."""
        self._check_open()
        counts = dict.fromkeys(EntryState, 0)
        for row in self._rows.values():
            counts[row.state] += 1
        return counts

    async def oldest_pending(self, now: float) -> float | None:
        """Return the age of the oldest unfinished entry; see `JournalStore.oldest_pending`."""
        self._check_open()
        now = check_time("now", now)
        live = (EntryState.PENDING, EntryState.IN_FLIGHT)
        created = [row.created for row in self._rows.values() if row.state in live]
        return now - min(created) if created else None

    async def dead(self, limit: int = 100) -> builtins.list[Entry]:
        """Return dead entries by id; see `JournalStore.dead`."""
        return await self.list(state=EntryState.DEAD, limit=limit)

    async def replay(self, entry_id: int, now: float) -> Entry:
        """Send a dead entry back to pending; see `JournalStore.replay`."""
        self._check_open()
        now = check_time("now", now)
        row = self._row(entry_id)
        _rules.require_dead(row.entry_id, row.state)
        row.state = EntryState.PENDING
        row.attempts = 0
        row.next_attempt = now
        row.updated = now
        # A dead entry always has every earlier entry of its call done: it was claimed.
        self._make_head(row)
        return row.entry()

    async def purge_done(self, older_than: float, now: float) -> int:
        """Delete old done entries of finished calls; see `JournalStore.purge_done`."""
        self._check_open()
        cutoff = check_time("now", now) - check_time("older_than", older_than)
        purged = 0
        for call_id, call in builtins.list(self._calls.items()):
            if call.open:
                continue
            keep: builtins.list[int] = []
            for entry_id in call.ids:
                row = self._rows[entry_id]
                if row.updated <= cutoff:
                    del self._rows[entry_id]
                    del self._keys[row.key]
                    purged += 1
                else:
                    keep.append(entry_id)
            call.ids = keep
            if not keep:
                del self._calls[call_id]
        return purged

    async def close(self) -> None:
        """Drop everything; later calls raise `JournalClosed`."""
        self._closed = True
        self._rows.clear()
        self._keys.clear()
        self._calls.clear()
        self._due.clear()
        self._parked.clear()
        self._leased.clear()

    async def __aenter__(self) -> Self:
        """Return the store."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        await self.close()
