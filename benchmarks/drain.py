"""Draining a backlog after recovery, against an instance that allows 200 requests a second.

A SQLite journal holds a backlog of creates (a phone log and an Interaction per call). The
FakeServiceNow is served over real HTTP on 127.0.0.1, in its own process, with a rate limit of
200 requests per second (429 + Retry-After beyond it). The drainer starts knowing nothing of
the limit and learns it.

Measured: the achieved rate of successful requests over the drain, as a share of the limit
(efficiency), 429s as a share of all requests, and duplicates (records per correlation value
beyond one), counted from the fake's own tables, not from the drainer.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from callresilience import Agent, Call
from callresilience.engine import CallRecords
from callresilience.journal import (
    Drainer,
    DrainerConfig,
    DrainerEvent,
    EntryState,
    RecordWritten,
    SqliteJournal,
)
from callresilience.servicenow import BasicAuth, ServiceNowClient

from ._common import table

LIMIT = 200


async def _fill(store: SqliteJournal, calls: int) -> None:
    """Journal what the engine journals for each accepted call: a phone log, an Interaction."""
    records = CallRecords()
    agent = Agent("bench-agent", user_sys_id="0" * 32)
    now = time.time()
    for start in range(0, calls, 500):
        intents = []
        for n in range(start, min(calls, start + 500)):
            call = Call(f"call-{n:06d}", "+14155550100", "support", 0.0)
            intents += records.accepted(call, agent, now, interaction_exists=False)
        await store.append(intents, now)


async def _drain(entries: int) -> dict[str, Any]:
    calls = entries // 2
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._fake_process",
        "--rate-limit",
        str(LIMIT),
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,  # the final report lists every record's correlation value
    )
    assert server.stdout is not None
    url = (await server.stdout.readline()).decode().strip()
    config = DrainerConfig(idle_poll=0.05, concurrency=16)
    try:
        with tempfile.TemporaryDirectory() as folder:
            async with SqliteJournal(Path(folder) / "journal.db") as store:
                await _fill(store, calls)
                async with ServiceNowClient(url, auth=BasicAuth("sn", "pw")) as client:
                    written = 0
                    finished = asyncio.Event()

                    def count(event: DrainerEvent) -> None:
                        # Progress from events: polling the journal's counts would compete
                        # with the drainer for the SQLite thread.
                        nonlocal written
                        if isinstance(event, RecordWritten):
                            written += 1
                            if written == entries:
                                finished.set()

                    started = time.perf_counter()
                    async with Drainer(store, client, config, on_event=count) as drainer:
                        drainer.wake()
                        await finished.wait()
                        learned = drainer.bucket.rate
                    assert (await store.counts())[EntryState.DONE] == entries
                    elapsed = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGTERM)
        report = json.loads((await server.stdout.readline()).decode())
        await server.wait()
    first, last = report["ok_span"]
    ok = report["ok"]
    limited = report["statuses"].get("429", 0)
    duplicates = sum(
        count - 1 for values in report["values"].values() for count in Counter(values).values()
    )
    distinct = sum(len(set(values)) for values in report["values"].values())
    return {
        "entries": entries,
        "rate_limit_per_s": LIMIT,
        "achieved_per_s": round(ok / (last - first), 1),
        "efficiency": round(ok / (last - first) / LIMIT, 3),
        "requests": report["requests"],
        "http_429": limited,
        "http_429_share": round(limited / report["requests"], 4),
        "duplicates": duplicates,
        "missing": entries - distinct,
        "learned_rate_per_s": round(learned, 1),
        "seconds": round(elapsed, 1),
    }


def run(*, quick: bool) -> dict[str, Any]:
    """Drain a backlog (2,000 entries quick, 10,000 full) and print the figures.

    The quick drain lasts about 10 s instead of 50 s, so the drainer's first second, before it
    has learned the limit, weighs five times as much in its efficiency.
    """
    result = asyncio.run(_drain(2_000 if quick else 10_000))
    table(
        f"drain: {result['entries']:,} entries against {LIMIT} requests/s over loopback",
        [
            ("achieved rate", f"{result['achieved_per_s']:,}/s", f"limit {LIMIT}/s"),
            ("efficiency", f"{result['efficiency']:.3f}", "aim >= 0.9"),
            ("429 share of requests", f"{result['http_429_share']:.2%}", "aim < 1%"),
            ("requests", f"{result['requests']:,}", ""),
            ("duplicates", f"{result['duplicates']}", "must be 0"),
            ("missing records", f"{result['missing']}", "must be 0"),
            ("learned rate", f"{result['learned_rate_per_s']}/s", ""),
            ("wall time", f"{result['seconds']} s", ""),
        ],
    )
    return result
