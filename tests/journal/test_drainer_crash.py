"""Crashes with real processes: a drainer killed with SIGKILL mid-drain loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import pytest

from callresilience import Agent, Call
from callresilience.engine import CallRecords
from callresilience.journal import EntryState, SqliteJournal
from callresilience.testing import DropResponse, FakeServiceNow, ServiceUnavailable

CHILD = Path(__file__).with_name("drain_child.py")
CALLS = 1_000


async def fill(path: Path) -> None:
    """Journal what the engine journals for each of CALLS accepted calls."""
    records = CallRecords()
    agent = Agent("ada", user_sys_id="a" * 32)
    async with SqliteJournal(path) as store:
        for start in range(0, CALLS, 100):
            intents = []
            for n in range(start, start + 100):
                call = Call(f"call-{n:04d}", "+14155550100", "support", 0.0)
                intents += records.accepted(call, agent, time.time(), interaction_exists=False)
            await store.append(intents, time.time())


async def run_until(fake: FakeServiceNow, journal: Path, url: str, created: int | None) -> int:
    """Run a child; kill it with SIGKILL once `created` Interactions exist (None: let it end)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(journal), url, stdout=asyncio.subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while child.returncode is None and time.monotonic() < deadline:
            if created is not None and len(fake.records("interaction")) >= created:
                child.send_signal(signal.SIGKILL)
                await child.wait()
                return -signal.SIGKILL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 0.05)
        if child.returncode is None:
            child.kill()
            await child.wait()
            pytest.fail("the drainer did not finish within 120 s")
        return child.returncode
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


@pytest.mark.anyio
async def test_killed_drainer_restarts_and_every_record_exists_once(tmp_path: Path) -> None:
    """2,000 entries, lost answers and 503s, SIGKILL twice: one record per entry, in order."""
    journal = tmp_path / "journal.db"
    await fill(journal)
    fake = FakeServiceNow(user="sn", password="pw", seed=3)
    fake.faults.add(DropResponse(), probability=0.1, methods={"POST"})
    fake.faults.add(ServiceUnavailable(), probability=0.05, methods={"POST"})
    async with fake.serve(port=0) as url:
        assert await run_until(fake, journal, url, created=CALLS // 4) == -signal.SIGKILL
        assert await run_until(fake, journal, url, created=CALLS // 2) == -signal.SIGKILL
        assert await run_until(fake, journal, url, created=None) == 0

    logs = {r["call_id"]: r for r in fake.records("sn_openframe_phone_log")}
    interactions = fake.records("interaction")
    assert len(logs) == CALLS
    assert len(interactions) == CALLS
    assert len({r["correlation_id"] for r in interactions}) == CALLS
    for interaction in interactions:
        # Per-call order: the Interaction was created after its phone log, and points at it.
        log = logs[interaction["correlation_id"]]
        assert interaction["channel_metadata_document"] == log["sys_id"]
    async with SqliteJournal(journal) as store:
        counts = await store.counts()
    assert counts[EntryState.DONE] == 2 * CALLS
    assert any(r.outcome == "dropped" for r in fake.requests)
