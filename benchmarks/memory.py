"""Memory per queued call and per pending journal entry.

- **per queued call**: the router suite's own measure (`router.bytes_per_queued_call`),
  tracemalloc's count of the bytes the router and the Call objects hold per waiting call.
- **per pending journal entry**: entries appended (and left pending) to a `MemoryJournal` and
  to a `SqliteJournal` (WAL, in a temporary folder), two per call as the engine journals a
  phone log and an Interaction, 250 at a time. Each store is measured in a fresh interpreter,
  twice: once with tracemalloc (the Python objects the store keeps: all of a memory journal's
  entries; none of SQLite's own pages, which tracemalloc cannot see) and once by the growth of
  the process's resident set (RSS, from /proc: everything, SQLite's page cache included). For
  SQLite the file's growth per entry (database and WAL) is given too: that is where its
  entries live. The four interpreters run two at a time.

``bytes_per_pending_entry`` in the figures is the `MemoryJournal`'s, by tracemalloc (the store
that keeps its entries in memory, counted as the queued call is); every store and measure is
under ``bytes_per_pending_entry_by_store``.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import tempfile
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

from callresilience.journal import Intent, JournalStore, MemoryJournal, SqliteJournal

from ._common import table
from .journal import PAYLOAD, T0
from .router import TARGET_BYTES, bytes_per_queued_call

Store = Literal["memory_journal", "sqlite_journal"]
Measure = Literal["tracemalloc", "rss"]
STORES: tuple[Store, ...] = ("memory_journal", "sqlite_journal")
MEASURES: tuple[Measure, ...] = ("tracemalloc", "rss")
BATCH = 250  # calls per append


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _batch(first: int, calls: int) -> list[Intent]:
    return [
        Intent(f"call-{n}", f"create_{step}", PAYLOAD, f"call-{n}:{step}")
        for n in range(first, first + calls)
        for step in ("phone_log", "interaction")
    ]


def _used(measure: Measure) -> int:
    gc.collect()
    if measure == "rss":
        return _rss_bytes()
    return tracemalloc.get_traced_memory()[0]


async def _grow(journal: JournalStore, measure: Measure, calls: int) -> int:
    """Append `calls` calls' entries to `journal`; return the bytes the measure grew by."""
    await journal.append(_batch(-1, 1), T0)  # the schema, statements and buffers exist
    before = _used(measure)
    for first in range(0, calls, BATCH):
        await journal.append(_batch(first, min(BATCH, calls - first)), T0)
    grown = _used(measure) - before
    counts = await journal.counts()
    assert sum(counts.values()) == 2 * calls + 2, counts
    return grown


def pending_entry_bytes(store: Store, measure: Measure, calls: int) -> dict[str, float]:
    """Bytes per pending entry in `store` by `measure` (and, for SQLite, on disk).

    Meant for a fresh interpreter: run it through `_in_fresh_process`.
    """
    entries = 2 * calls
    if measure == "tracemalloc":
        tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as folder:
        path = Path(folder) / "journal.db"
        journal: JournalStore = (
            MemoryJournal() if store == "memory_journal" else SqliteJournal(path)
        )

        async def measure_it() -> int:
            async with journal:
                return await _grow(journal, measure, calls)

        grown = asyncio.run(measure_it())
        disk = sum(f.stat().st_size for f in Path(folder).iterdir())
    return {"bytes": grown / entries, "disk_bytes": disk / entries}


def _in_fresh_processes(calls: int) -> dict[tuple[Store, Measure], dict[str, float]]:
    """Every store by every measure, each in a fresh interpreter, two at a time.

    Bytes counted, not time: two processes side by side do not change each other's figures.
    """
    context = multiprocessing.get_context("spawn")
    cases = [(store, measure) for store in STORES for measure in MEASURES]
    with ProcessPoolExecutor(2, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {case: pool.submit(pending_entry_bytes, *case, calls) for case in cases}
        return {case: future.result() for case, future in futures.items()}


def run(*, quick: bool) -> dict[str, Any]:
    """Run the memory suite and print its table."""
    queued, calls = (10_000, 10_000) if quick else (10_000, 50_000)
    measured = _in_fresh_processes(calls)
    pending: dict[str, dict[str, int]] = {}
    for store in STORES:
        pending[store] = {m: round(measured[store, m]["bytes"]) for m in MEASURES}
        if store == "sqlite_journal":
            pending[store]["disk"] = round(measured[store, "rss"]["disk_bytes"])
    results: dict[str, Any] = {
        "bytes_per_queued_call": round(bytes_per_queued_call(queued)),
        # The store that keeps its entries in memory, counted the way the queued call is.
        "bytes_per_pending_entry": pending["memory_journal"]["tracemalloc"],
        "bytes_per_pending_entry_by_store": pending,
        "queued_calls": queued,
        "pending_entries": 2 * calls,
    }
    rows = [
        (
            "bytes per queued call (tracemalloc)",
            f"{results['bytes_per_queued_call']:,} B",
            f"aim < {TARGET_BYTES} B; {queued:,} waiting",
        )
    ]
    for store, figures in pending.items():
        for measure, size in figures.items():
            rows.append(
                (f"bytes per pending entry, {store} ({measure})", f"{size:,} B", f"{2 * calls:,}")
            )
    table("memory: router and journal", rows)
    return results
