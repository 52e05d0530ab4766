"""A Hypothesis state machine over journal, drainer and fake: appends, faults, crashes, restarts.

Whatever the sequence, once the faults stop and time moves on, every intent has exactly one
record (or is dead because the instance refused it for good), in per-call order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from callresilience.journal import (
    Drainer,
    DrainerConfig,
    EntryState,
    MemoryJournal,
    create_intent,
    update_intent,
)
from callresilience.resilience import BreakerConfig, BreakerState
from callresilience.servicenow import BasicAuth, ServiceNowClient
from callresilience.testing import (
    DropResponse,
    FakeServiceNow,
    ManualClock,
    RefuseConnections,
    ServiceUnavailable,
    TransactionCancelled,
)

CONFIG = DrainerConfig(
    breaker=BreakerConfig(minimum_calls=3, window=6, open_wait=5, probes=1),
    lease=30.0,
    settle=5.0,
)
FAULTS = {
    "503": ServiceUnavailable(),
    "drop": DropResponse(),
    "drop-before-commit": DropResponse(commit=False),
    "refuse": RefuseConnections(),
    "cancelled": TransactionCancelled(),
}


class DrainerMachine(RuleBasedStateMachine):
    """Random appends, faults, crashes and restarts; exactly-once checked at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(autojump=True)
        self.fake = FakeServiceNow(clock=self.clock, user="sn", password="pw", seed=1)
        self.fake.create_table("u_bad_table_gone")
        self.client = ServiceNowClient(
            "https://fake.service-now.com",
            auth=BasicAuth("sn", "pw"),
            transport=self.fake.transport(),
            clock=self.clock,
            read_timeout=2.0,
        )
        self.store = MemoryJournal()
        self.drainer = self.new_drainer(0)
        self.calls: list[str] = []
        self.doomed: set[str] = set()
        self.restarts = 0

    def new_drainer(self, n: int) -> Drainer:
        return Drainer(self.store, self.client, CONFIG, clock=self.clock, owner=f"w{n}")

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    @rule(doomed=st.booleans())
    def append_call(self, doomed: bool) -> None:
        """Journal a call's phone log, Interaction and close; some go to a table that fails."""
        call_id = f"c{len(self.calls)}"
        self.calls.append(call_id)
        table = "u_missing" if doomed else "interaction"
        if doomed:
            self.doomed.add(call_id)
        intents = [
            create_intent(
                call_id,
                "phone_log",
                "sn_openframe_phone_log",
                {"call_id": call_id},
                correlation=("call_id", call_id),
            ),
            create_intent(
                call_id,
                "interaction",
                table,
                {"correlation_id": call_id, "channel_metadata_document": {"$ref": "phone_log"}},
                correlation=("correlation_id", call_id),
            ),
            update_intent(call_id, "end", table, "interaction", {"state": "closed_complete"}),
        ]
        self.run(self.store.append(intents, self.clock.time()))

    @rule(fault=st.sampled_from([None, *FAULTS]), probability=st.sampled_from([0.3, 1.0]))
    def drain(self, fault: str | None, probability: float) -> None:
        """Run one batch, perhaps while the instance misbehaves."""
        entry = None
        if fault is not None:
            entry = self.fake.faults.add(FAULTS[fault], probability=probability)
        try:
            self.run(self.drainer.drain_once())
        finally:
            if entry is not None:
                self.fake.faults.remove(entry)

    @rule(count=st.integers(1, 5))
    def crash(self, count: int) -> None:
        """A worker claims entries and dies without finishing them."""
        self.run(self.store.claim("ghost", self.clock.time(), count, CONFIG.lease))

    @rule()
    def restart(self) -> None:
        """The process restarts: a new drainer with a fresh breaker and bucket."""
        self.restarts += 1
        self.drainer = self.new_drainer(self.restarts)

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0, 40.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        breaker = self.drainer.breaker()
        if breaker.state(self.clock.now()) is BreakerState.HALF_OPEN:
            self.run(self.drainer._probe(breaker))

    @invariant()
    def never_two_records_for_one_call(self) -> None:
        for table, field in (
            ("sn_openframe_phone_log", "call_id"),
            ("interaction", "correlation_id"),
        ):
            values = [r[field] for r in self.fake.records(table)]
            assert len(values) == len(set(values)), table

    def unfinished(self) -> set[str]:
        """Calls with entries still to run that are not held behind a dead entry."""
        pending = self.run(self.store.list(state=EntryState.PENDING, limit=10_000))
        leased = self.run(self.store.list(state=EntryState.IN_FLIGHT, limit=10_000))
        dead = {e.call_id for e in self.run(self.store.dead(limit=10_000))}
        return {e.call_id for e in pending if e.call_id not in dead} | {e.call_id for e in leased}

    def teardown(self) -> None:
        """With the instance healthy again, everything drains: once each, in order."""
        try:
            self.fake.faults.clear()
            for _ in range(300):
                self.clock.advance(CONFIG.lease)
                breaker = self.drainer.breaker()
                if breaker.state(self.clock.now()) is BreakerState.HALF_OPEN:
                    self.run(self.drainer._probe(breaker))
                self.run(self.drainer.drain_once())
                if not self.unfinished():
                    break
            # What is left waits behind a dead entry of its call, by design.
            assert self.unfinished() == set(), self.run(self.store.counts())
            logs = {r["call_id"]: r for r in self.fake.records("sn_openframe_phone_log")}
            interactions = {r["correlation_id"]: r for r in self.fake.records("interaction")}
            assert set(logs) == set(self.calls)
            assert set(interactions) == set(self.calls) - self.doomed
            for call_id, interaction in interactions.items():
                assert interaction["channel_metadata_document"] == logs[call_id]["sys_id"]
                assert interaction["state"] == "closed_complete"
            dead = self.run(self.store.dead(limit=1_000))
            assert {e.call_id for e in dead} == self.doomed
        finally:
            self.run(self.client.aclose())
            self.loop.close()


DrainerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDrainerMachine = DrainerMachine.TestCase
TestDrainerMachine.__doc__ = "Any mix of faults, crashes and restarts ends with each record once."
