"""A Hypothesis state machine per store: random operations, checked against a small model."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import attrs
import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from callresilience.journal import (
    EntryState,
    EntryStateError,
    Intent,
    JournalStore,
    LeaseLost,
    MemoryJournal,
    SqliteJournal,
)
from callresilience.journal._rules import takeover_note

from .conftest import T0

_T = TypeVar("_T")
PENDING, IN_FLIGHT, DONE, DEAD = EntryState
CALLS = ("c0", "c1", "c2", "c3")
OWNERS = ("w1", "w2")


@attrs.define
class Model:
    """What the store should hold for one entry."""

    entry_id: int
    call_id: str
    seq: int
    key: str
    created: float
    state: EntryState = PENDING
    attempts: int = 0
    next_attempt: float = 0.0
    lease_owner: str | None = None
    lease_until: float | None = None
    last_error: str | None = None
    updated: float = 0.0


class JournalMachine(RuleBasedStateMachine):
    """Drives one store with random operations and compares it with the model after each."""

    durable = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="journal-machine-"))
        self.store = self.open()
        self.now = T0
        self.serial = 0
        self.model: dict[int, Model] = {}
        self.results: dict[str, dict[str, str]] = {}
        self.last_id = 0

    def open(self) -> JournalStore:
        """Open the store under test."""
        return MemoryJournal()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run one store operation on the machine's own event loop."""
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        """Close the store and the loop, and remove the files."""
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.dir)

    # -- the model -------------------------------------------------------------------------

    def of_call(self, call_id: str) -> list[Model]:
        """The model's entries of one call, in seq order."""
        return sorted((m for m in self.model.values() if m.call_id == call_id), key=lambda m: m.seq)

    def runnable(self, entry: Model) -> bool:
        """Whether a claim may take the entry now: due, and first unfinished of its call."""
        due = (entry.state is PENDING and entry.next_attempt <= self.now) or (
            entry.state is IN_FLIGHT
            and entry.lease_until is not None
            and entry.lease_until <= self.now
        )
        earlier = [m for m in self.of_call(entry.call_id) if m.seq < entry.seq]
        return due and all(m.state is DONE for m in earlier)

    # -- rules -----------------------------------------------------------------------------

    @rule(calls=st.lists(st.sampled_from(CALLS), min_size=1, max_size=3), again=st.booleans())
    def append(self, calls: list[str], again: bool) -> None:
        """Append new intents, sometimes with a key already in the journal."""
        intents = []
        for call_id in calls:
            self.serial += 1
            intents.append(
                Intent(call_id, "create", {"n": self.serial}, f"{call_id}:{self.serial}")
            )
        if again and self.model:
            old = self.model[min(self.model)]
            intents.append(Intent(old.call_id, "create", {}, old.key))
        entries = self.run(self.store.append(intents, self.now))
        keys = {m.key: m for m in self.model.values()}
        for intent, entry in zip(intents, entries, strict=True):
            known = keys.get(intent.key)
            if known is not None:
                assert entry.entry_id == known.entry_id
                continue
            existing = self.of_call(intent.call_id)
            assert entry.entry_id > self.last_id
            assert entry.seq == (existing[-1].seq + 1 if existing else 1)
            self.last_id = entry.entry_id
            model = Model(
                entry.entry_id,
                intent.call_id,
                entry.seq,
                intent.key,
                self.now,
                next_attempt=self.now,
                updated=self.now,
            )
            self.model[entry.entry_id] = model
            keys[intent.key] = model

    @rule(owner=st.sampled_from(OWNERS), limit=st.integers(1, 4), lease=st.integers(1, 30))
    def claim(self, owner: str, limit: int, lease: int) -> None:
        """Claim: exactly the oldest runnable entries, never one behind an unfinished one."""
        expected = sorted(
            (m for m in self.model.values() if self.runnable(m)),
            key=lambda m: (m.next_attempt, m.entry_id),
        )[:limit]
        claimed = self.run(self.store.claim(owner, self.now, limit, lease))
        assert [e.entry_id for e in claimed] == [m.entry_id for m in expected]
        for entry in claimed:
            for earlier in self.of_call(entry.call_id):
                if earlier.seq < entry.seq:
                    assert earlier.state is DONE, "per-call order violated"
        for model in expected:
            if model.state is IN_FLIGHT:
                # Taken over: the previous owner's outcome is unknown, and the entry says so.
                model.last_error = takeover_note(model.lease_owner, model.lease_until)
            model.state = IN_FLIGHT
            model.lease_owner = owner
            model.lease_until = self.now + lease
            model.attempts += 1
            model.updated = self.now

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        operation=st.sampled_from(["complete", "retry", "kill"]),
        owner=st.sampled_from(OWNERS),
        delay=st.integers(0, 20),
    )
    def finish(self, data: st.DataObject, operation: str, owner: str, delay: int) -> None:
        """Complete, retry or kill an entry: refused unless in flight under that owner."""
        in_flight = [m for m in self.model.values() if m.state is IN_FLIGHT]
        pool = in_flight if in_flight and data.draw(st.booleans()) else list(self.model.values())
        model = data.draw(st.sampled_from(sorted(pool, key=lambda m: m.entry_id)))
        if data.draw(st.booleans()) and model.lease_owner:
            owner = model.lease_owner
        allowed = model.state is IN_FLIGHT and model.lease_owner == owner
        try:
            if operation == "complete":
                name = f"r{model.seq}"
                self.run(self.store.complete(model.entry_id, owner, self.now, None, {name: "x"}))
                self.results.setdefault(model.call_id, {})[name] = "x"
            elif operation == "retry":
                self.run(
                    self.store.retry(model.entry_id, owner, self.now, self.now + delay, "retry")
                )
            else:
                self.run(self.store.kill(model.entry_id, owner, self.now, "kill"))
        except LeaseLost:
            assert not allowed
            return
        assert allowed
        model.state = {"complete": DONE, "retry": PENDING, "kill": DEAD}[operation]
        model.lease_owner = None
        model.lease_until = None
        model.updated = self.now
        model.last_error = {"complete": None, "retry": "retry", "kill": "kill"}[operation]
        if operation == "retry":
            model.next_attempt = self.now + delay

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """Replay an entry: refused unless dead."""
        dead = [m for m in self.model.values() if m.state is DEAD]
        pool = dead if dead and data.draw(st.booleans()) else list(self.model.values())
        model = data.draw(st.sampled_from(sorted(pool, key=lambda m: m.entry_id)))
        try:
            self.run(self.store.replay(model.entry_id, self.now))
        except EntryStateError:
            assert model.state is not DEAD
            return
        assert model.state is DEAD
        model.state = PENDING
        model.attempts = 0
        model.next_attempt = self.now
        model.updated = self.now

    @rule(step=st.integers(0, 40))
    def advance(self, step: int) -> None:
        """Time passes; leases run out and retries come due."""
        self.now += step

    @rule(older_than=st.integers(0, 60))
    def purge(self, older_than: int) -> None:
        """Purge done entries of finished calls."""
        cutoff = self.now - older_than
        gone = []
        for call_id in CALLS:
            entries = self.of_call(call_id)
            if all(m.state is DONE for m in entries):
                gone += [m for m in entries if m.updated <= cutoff]
        assert self.run(self.store.purge_done(older_than, self.now)) == len(gone)
        for model in gone:
            del self.model[model.entry_id]
        for call_id in CALLS:
            if not self.of_call(call_id):
                self.results.pop(call_id, None)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        """Every entry is there, in the state the model expects; nothing more, nothing lost."""
        entries = self.run(self.store.list(limit=100_000))
        assert [e.entry_id for e in entries] == sorted(self.model)
        for entry in entries:
            model = self.model[entry.entry_id]
            got = (entry.call_id, entry.seq, entry.key, entry.state, entry.attempts)
            assert got == (model.call_id, model.seq, model.key, model.state, model.attempts)
            assert (entry.lease_owner, entry.lease_until) == (model.lease_owner, model.lease_until)
            assert (entry.next_attempt, entry.last_error) == (model.next_attempt, model.last_error)
            assert (entry.created, entry.updated) == (model.created, model.updated)
        counts = self.run(self.store.counts())
        assert counts == {s: sum(m.state is s for m in self.model.values()) for s in EntryState}
        for call_id in CALLS:
            assert self.run(self.store.call_results(call_id)) == self.results.get(call_id, {})


class SqliteMachine(JournalMachine):
    """The same machine on SQLite, with restarts: close the file and open it again."""

    def open(self) -> JournalStore:
        """Open (or reopen) the machine's file."""
        return SqliteJournal(self.dir / "journal.db", synchronous="NORMAL", batch_window=0)

    @rule()
    def restart(self) -> None:
        """Close the store and reopen the same file; everything must come back."""
        self.run(self.store.close())
        self.store = self.open()


TestMemoryJournal = JournalMachine.TestCase
TestMemoryJournal.settings = settings(max_examples=200, deadline=None)
TestSqliteJournal = SqliteMachine.TestCase
TestSqliteJournal.settings = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
