"""The journal stores' speed and footprint: appends, claims and the cost of a backlog.

Scenarios, each on a fresh file in a temporary directory (WAL, ``synchronous=FULL`` unless
said otherwise):

- **group commit**: thousands of concurrent single-intent appends (`asyncio.gather`), the
  way many calls ending at once append; they share transactions.
- **sequential**: one append at a time with no batch window, so each is its own commit: the
  fsync-bound rate the group commit exists to avoid.
- **claim + complete**: a drainer's cycle, a claim of 100 then one `complete` (one
  transaction) per entry.
- **memory**: the in-memory store's appends, one at a time.
- **backlog**: 100,000 pending entries (50,000 calls of two entries each, so half wait behind
  the other half): RSS growth of the process, the file's size, and the time of one claim.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from callresilience.journal import Intent, MemoryJournal, SqliteJournal

from ._common import table

T0 = 1_767_225_600.0
TARGET_APPENDS = 20_000
TARGET_RSS_MIB = 50
PAYLOAD = {"short_description": "Inbound call", "caller": "+14155550100", "queue": "sales"}


def _intent(n: int, step: str = "phone_log") -> Intent:
    return Intent(f"call-{n}", f"create_{step}", PAYLOAD, f"call-{n}:{step}")


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # not Linux: no figure


def _file_mib(path: Path) -> float:
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


async def group_commit(path: Path, appenders: int, rounds: int, **kwargs: Any) -> dict[str, Any]:
    """Return appends per second and commits for `rounds` of concurrent appends."""
    async with SqliteJournal(path, **kwargs) as journal:
        started = time.perf_counter()
        for r in range(rounds):
            base = r * appenders
            await asyncio.gather(
                *(journal.append([_intent(base + n)], T0) for n in range(appenders))
            )
        elapsed = time.perf_counter() - started
        return {"per_s": appenders * rounds / elapsed, "commits": journal.commits}


async def sequential(path: Path, count: int) -> float:
    """Return appends per second when each waits for its own commit."""
    async with SqliteJournal(path, batch_window=0) as journal:
        started = time.perf_counter()
        for n in range(count):
            await journal.append([_intent(n)], T0)
        return count / (time.perf_counter() - started)


async def claim_complete(path: Path, count: int) -> float:
    """Return entries claimed and completed per second, a claim of 100 at a time."""
    async with SqliteJournal(path) as journal:
        for start in range(0, count, 500):
            await journal.append([_intent(n) for n in range(start, start + 500)], T0)
        done = 0
        started = time.perf_counter()
        while done < count:
            claimed = await journal.claim("bench", T0, 100, 60)
            for entry in claimed:
                await journal.complete(entry.entry_id, "bench", T0, results={"phone_log": "x"})
            done += len(claimed)
        return count / (time.perf_counter() - started)


async def memory_appends(count: int) -> float:
    """Return the memory store's appends per second, one at a time."""
    async with MemoryJournal() as journal:
        intents = [_intent(n) for n in range(count)]
        started = time.perf_counter()
        for one in intents:
            await journal.append([one], T0)
        return count / (time.perf_counter() - started)


async def backlog(path: Path, entries: int) -> dict[str, float]:
    """Return RSS growth, file size and claim time with `entries` pending in SQLite."""
    gc.collect()
    before = _rss_kib()
    async with SqliteJournal(path) as journal:
        for start in range(0, entries // 2, 250):
            batch = [
                _intent(n, step) for n in range(start, start + 250) for step in ("log", "inter")
            ]
            await journal.append(batch, T0)
        del batch
        gc.collect()
        grown = (_rss_kib() - before) / 1024
        timings = []
        for n in range(20):
            started = time.perf_counter()
            await journal.claim("bench", T0 + n, 100, 60)
            timings.append(time.perf_counter() - started)
        counts = await journal.counts()
    return {
        "rss_growth_mib": grown,
        "file_mib": _file_mib(path),
        "claim_ms": statistics.median(timings) * 1000,
        "pending": float(sum(counts.values())),
    }


async def _run(quick: bool, folder: Path) -> dict[str, Any]:
    appenders, rounds = (2_000, 3) if quick else (5_000, 6)
    seq_count = 500 if quick else 2_000
    cycle_count = 2_000 if quick else 10_000
    memory_count = 50_000 if quick else 200_000
    full = await group_commit(folder / "group.db", appenders, rounds)
    normal = await group_commit(folder / "normal.db", appenders, rounds, synchronous="NORMAL")
    results: dict[str, Any] = {
        "concurrent_appenders": appenders,
        "sqlite_appends_per_s": round(full["per_s"]),
        "sqlite_commits_for_appends": full["commits"],
        "sqlite_appends_total": appenders * rounds,
        "sqlite_normal_appends_per_s": round(normal["per_s"]),
        "sqlite_appends_sequential_per_s": round(await sequential(folder / "seq.db", seq_count)),
        "claim_complete_per_s": round(await claim_complete(folder / "cycle.db", cycle_count)),
        "memory_appends_per_s": round(await memory_appends(memory_count)),
    }
    pending = await backlog(folder / "backlog.db", 100_000)
    results["rss_growth_mib_100k_pending"] = round(pending["rss_growth_mib"], 1)
    results["file_mib_100k_pending"] = round(pending["file_mib"], 1)
    results["claim_ms_100k_pending"] = round(pending["claim_ms"], 3)
    return results


def run(*, quick: bool) -> dict[str, Any]:
    """Run the journal suite and print its table."""
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as folder:
        results = asyncio.run(_run(quick, Path(folder)))
    r = results
    rows = [
        (
            f"SQLite FULL, {r['concurrent_appenders']:,} concurrent appends",
            f"{r['sqlite_appends_per_s']:,}/s",
            f"aim >= {TARGET_APPENDS:,}/s ({r['sqlite_commits_for_appends']} commits "
            f"for {r['sqlite_appends_total']:,})",
        ),
        (
            f"SQLite NORMAL, {r['concurrent_appenders']:,} concurrent",
            f"{r['sqlite_normal_appends_per_s']:,}/s",
            "",
        ),
        (
            "SQLite FULL, one append per commit",
            f"{r['sqlite_appends_sequential_per_s']:,}/s",
            "fsync-bound, for contrast",
        ),
        ("SQLite claim + complete", f"{r['claim_complete_per_s']:,}/s", "one commit per complete"),
        ("memory store appends", f"{r['memory_appends_per_s']:,}/s", ""),
        (
            "RSS growth, 100,000 pending (SQLite)",
            f"{r['rss_growth_mib_100k_pending']} MiB",
            f"aim < {TARGET_RSS_MIB} MiB",
        ),
        ("file size, 100,000 pending", f"{r['file_mib_100k_pending']} MiB", "db + wal"),
        ("one claim of 100, 100,000 pending", f"{r['claim_ms_100k_pending']} ms", "median of 20"),
    ]
    table("journal: SQLite (WAL) and memory stores", rows)
    return results
