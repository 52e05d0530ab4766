"""What only the SQLite store does: the file, its settings, group commit, crashes, restarts."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from callresilience import InvalidInput
from callresilience.journal import (
    Entry,
    EntryState,
    Intent,
    JournalClosed,
    JournalError,
    LeaseLost,
    SqliteJournal,
    UnknownEntry,
)
from callresilience.journal._sqlite import CLAIM_SQL, SCHEMA_VERSION

from .conftest import T0, intent

pytestmark = pytest.mark.anyio

WRITER = Path(__file__).with_name("_crash_writer.py")


async def test_the_file_uses_wal_and_full_sync_by_default(tmp_path: Path) -> None:
    """A new file is in WAL mode with synchronous=FULL and the current schema version."""
    async with SqliteJournal(tmp_path / "j.db") as journal:
        assert await journal.pragma("journal_mode") == "wal"
        assert await journal.pragma("synchronous") == 2  # FULL
        assert await journal.pragma("user_version") == SCHEMA_VERSION
        assert journal.path == str(tmp_path / "j.db")
        assert "FULL" in repr(journal)


async def test_synchronous_normal_is_applied(tmp_path: Path) -> None:
    """synchronous='NORMAL' reaches SQLite."""
    async with SqliteJournal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        assert await journal.pragma("synchronous") == 1  # NORMAL


async def test_finishing_entries_is_relaxed_then_full_sync_is_restored(tmp_path: Path) -> None:
    """complete/retry/kill commit with NORMAL (a lost one is re-run); FULL comes back after."""
    seen: list[int] = []
    async with SqliteJournal(tmp_path / "j.db") as journal:
        conn = journal._conn
        original = journal._entries  # reads the entries inside each finishing transaction

        def spy(*args: object) -> object:
            seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])
            return original(*args)  # type: ignore[arg-type]

        journal._entries = spy  # type: ignore[method-assign]
        intents = [
            Intent(call_id=f"c{n}", kind="create", payload={}, key=f"c{n}:a") for n in range(3)
        ]
        await journal.append(intents, 100.0)
        first, second, third = await journal.claim("w", 100.0, 3, 30)
        await journal.complete(first.entry_id, "w", 101.0)
        await journal.retry(second.entry_id, "w", 101.0, 200.0, "later")
        await journal.kill(third.entry_id, "w", 101.0, "no")
        assert seen == [1, 1, 1]  # NORMAL inside each of the three transactions
        assert await journal.pragma("synchronous") == 2  # FULL again


async def test_only_known_pragmas_are_read(tmp_path: Path) -> None:
    """pragma() answers only for the settings the store makes."""
    async with SqliteJournal(tmp_path / "j.db") as journal:
        with pytest.raises(InvalidInput):
            await journal.pragma("cache_size")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"synchronous": "OFF"},
        {"batch_window": -1},
        {"batch_window": float("nan")},
        {"max_batch": 0},
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    """Bad constructor arguments raise InvalidInput and create no file."""
    with pytest.raises(InvalidInput):
        SqliteJournal(tmp_path / "j.db", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "j.db").exists()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer schema version is refused, not misread."""
    with sqlite3.connect(tmp_path / "j.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqliteJournal(tmp_path / "j.db")


async def test_a_version_1_file_is_brought_up_to_date(tmp_path: Path) -> None:
    """A journal written before entries had groups opens, keeps its entries, and gains groups."""
    with sqlite3.connect(tmp_path / "j.db") as conn:
        conn.execute(
            "CREATE TABLE entries (entry_id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT "
            "NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, key TEXT NOT "
            "NULL UNIQUE, state TEXT NOT NULL, head INTEGER NOT NULL, attempts INTEGER NOT NULL, "
            "next_attempt REAL NOT NULL, lease_owner TEXT, lease_until REAL, last_error TEXT, "
            "created REAL NOT NULL, updated REAL NOT NULL, result TEXT, UNIQUE (call_id, seq))"
        )
        conn.execute(
            "CREATE INDEX entries_runnable ON entries (next_attempt, entry_id) WHERE head = 1"
        )
        conn.execute("CREATE INDEX entries_state ON entries (state, created)")
        conn.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY, results TEXT NOT NULL)")
        conn.execute(
            "INSERT INTO entries (call_id, seq, kind, payload, key, state, head, attempts, "
            "next_attempt, created, updated) VALUES ('c1', 1, 'create_a', '{}', 'c1:a', "
            "'pending', 1, 0, ?, ?, ?)",
            (T0, T0, T0),
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        assert await journal.pragma("user_version") == SCHEMA_VERSION
        (old,) = await journal.claim("w1", T0, 10, 30, skip_groups={"g"})
        assert (old.key, old.group) == ("c1:a", "")
        (new,) = await journal.append([Intent("c2", "create_a", {}, "c2:a", group="g")], T0)
        assert await journal.claim("w1", T0, 10, 30, skip_groups={"g"}) == []
        assert (await journal.get(new.entry_id)).group == "g"


def test_a_database_without_wal_is_refused() -> None:
    """An in-memory database cannot use WAL, so it is refused with a pointer elsewhere."""
    with pytest.raises(JournalError, match="MemoryJournal"):
        SqliteJournal(":memory:")


def test_an_unopenable_path_raises_sqlite_error(tmp_path: Path) -> None:
    """A path SQLite cannot open raises its own error and leaks no thread or connection."""
    with pytest.raises(sqlite3.OperationalError):
        SqliteJournal(tmp_path / "missing" / "j.db")


async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    """Close and reopen: entries, states, leases and results are all still there."""
    path = tmp_path / "j.db"
    async with SqliteJournal(path, batch_window=0) as journal:
        first, second, third = await journal.append(
            [intent("c1", "a"), intent("c1", "b"), intent("c2", "a")], T0
        )
        await journal.claim("w1", T0, 10, 30)
        await journal.complete(first.entry_id, "w1", T0 + 1, {"n": 1}, {"phone_log": "p1"})
        before = await journal.list()
    async with SqliteJournal(path, batch_window=0) as journal:
        assert await journal.list() == before
        assert await journal.call_results("c1") == {"phone_log": "p1"}
        (claimed,) = await journal.claim("w2", T0 + 2, 10, 30)
        assert claimed.entry_id == second.entry_id
        assert (await journal.get(third.entry_id)).lease_owner == "w1"
        (taken,) = await journal.claim("w2", T0 + 30, 10, 30)
        assert taken.entry_id == third.entry_id
        assert taken.attempts == 2


async def test_concurrent_appends_share_commits(tmp_path: Path) -> None:
    """1,000 concurrent single-intent appends take a handful of transactions, not 1,000."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0, max_batch=500) as journal:
        entries = await asyncio.gather(
            *(journal.append([intent(f"c{n}", "a")], T0) for n in range(1000))
        )
        assert journal.commits <= 5
        assert len({batch[0].entry_id for batch in entries}) == 1000
        assert (await journal.counts())[EntryState.PENDING] == 1000


async def test_a_full_batch_flushes_before_the_window(tmp_path: Path) -> None:
    """With an hour-long window, reaching max_batch still flushes at once."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=3600, max_batch=10) as journal:
        entries = await asyncio.gather(
            *(journal.append([intent(f"c{n}", "a")], T0) for n in range(10))
        )
        assert len(entries) == 10
        assert journal.commits == 1


async def test_a_batch_bigger_than_max_batch_is_written_whole(tmp_path: Path) -> None:
    """One caller's batch over max_batch is still one transaction; others go separately."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0, max_batch=5) as journal:
        big, small = await asyncio.gather(
            journal.append([intent(f"c{n}", "a") for n in range(12)], T0),
            journal.append([intent("d", "a")], T0),
        )
        assert len(big) == 12
        assert len(small) == 1
        assert journal.commits == 2


async def test_the_window_groups_appends_that_arrive_apart(tmp_path: Path) -> None:
    """Appends arriving one loop turn apart within the window share a commit."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0.05) as journal:
        first = asyncio.ensure_future(journal.append([intent("c1", "a")], T0))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(journal.append([intent("c2", "a")], T0))
        await asyncio.gather(first, second)
        assert journal.commits == 1


async def test_a_cancelled_append_is_skipped_if_not_yet_written(tmp_path: Path) -> None:
    """A caller cancelled before the flush has its intents dropped; others are written."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=3600, max_batch=2) as journal:
        doomed = asyncio.ensure_future(journal.append([intent("c1", "a")], T0))
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        kept = asyncio.ensure_future(journal.append([intent("c2", "a")], T0))
        await asyncio.sleep(0)
        await journal.append([intent("c3", "a")], T0)  # fills the batch: flush now
        await kept
        assert [e.key for e in await journal.list()] == ["c2:a", "c3:a"]


async def test_a_failed_commit_fails_its_callers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error reaches every caller of that batch; the next batch is written."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        real = journal._write_appends

        def broken(requests: object) -> object:
            monkeypatch.setattr(journal, "_write_appends", real)
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(journal, "_write_appends", broken)
        results = await asyncio.gather(
            journal.append([intent("c1", "a")], T0),
            journal.append([intent("c2", "a")], T0),
            return_exceptions=True,
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        assert await journal.list() == []
        (entry,) = await journal.append([intent("c1", "a")], T0)
        assert entry.seq == 1


async def test_concurrent_finishes_share_one_relaxed_commit(tmp_path: Path) -> None:
    """Completes, retries and kills arriving together are one transaction, each answered."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        await journal.append([intent(f"c{n}", "a") for n in range(6)], T0)
        entries = await journal.claim("w", T0, 6, 30)
        before = journal.commits
        done = await asyncio.gather(
            *(journal.complete(e.entry_id, "w", T0 + 1, {"n": 1}, {"x": "y"}) for e in entries[:4]),
            journal.retry(entries[4].entry_id, "w", T0 + 1, T0 + 9, "later"),
            journal.kill(entries[5].entry_id, "w", T0 + 1, "no"),
        )
        assert journal.commits == before + 1
        assert [e.state for e in done] == [EntryState.DONE] * 4 + [
            EntryState.PENDING,
            EntryState.DEAD,
        ]
        assert done == [await journal.get(e.entry_id) for e in entries]
        assert await journal.call_results("c0") == {"x": "y"}


async def test_a_lost_lease_in_a_batch_of_finishes_fails_only_its_caller(tmp_path: Path) -> None:
    """One refused finish raises for its caller; the others of the batch are committed."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        await journal.append([intent("c1", "a"), intent("c2", "a")], T0)
        first, second = await journal.claim("w", T0, 2, 30)
        results = await asyncio.gather(
            journal.complete(first.entry_id, "thief", T0 + 1),
            journal.complete(second.entry_id, "w", T0 + 1),
            journal.complete(999, "w", T0 + 1),
            return_exceptions=True,
        )
        assert isinstance(results[0], LeaseLost)
        assert isinstance(results[1], Entry)
        assert isinstance(results[2], UnknownEntry)
        assert (await journal.get(first.entry_id)).state is EntryState.IN_FLIGHT
        assert (await journal.get(second.entry_id)).state is EntryState.DONE


async def test_a_failed_commit_of_finishes_fails_them_all_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error in a batch of finishes reaches every caller; the entries stay in flight."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        await journal.append([intent("c1", "a"), intent("c2", "a")], T0)
        entries = await journal.claim("w", T0, 2, 30)
        real = journal._conn

        class Broken:
            """The connection, failing once the kill is written (after the complete)."""

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

            def executemany(self, sql: str, rows: Any) -> object:
                cursor = real.executemany(sql, rows)
                if "'dead'" in sql:
                    raise sqlite3.OperationalError("disk I/O error")
                return cursor

        monkeypatch.setattr(journal, "_conn", Broken())
        results = await asyncio.gather(
            journal.complete(entries[0].entry_id, "w", T0 + 1),
            journal.kill(entries[1].entry_id, "w", T0 + 1, "no"),
            return_exceptions=True,
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        assert {e.state for e in await journal.list()} == {EntryState.IN_FLIGHT}


async def test_a_finish_cancelled_before_its_batch_is_skipped(tmp_path: Path) -> None:
    """A caller cancelled while queued leaves its entry in flight; close waits for the rest."""
    journal = SqliteJournal(tmp_path / "j.db", batch_window=0)
    await journal.append([intent("c1", "a"), intent("c2", "a")], T0)
    first, second = await journal.claim("w", T0, 2, 30)
    doomed = asyncio.ensure_future(journal.complete(first.entry_id, "w", T0 + 1))
    kept = asyncio.ensure_future(journal.complete(second.entry_id, "w", T0 + 1))
    await asyncio.sleep(0)
    doomed.cancel()
    await journal.close()
    assert doomed.cancelled()
    assert (await kept).state is EntryState.DONE
    with pytest.raises(JournalClosed):
        await journal.complete(first.entry_id, "w", T0 + 2)
    async with SqliteJournal(tmp_path / "j.db") as reopened:
        assert (await reopened.get(first.entry_id)).state is EntryState.IN_FLIGHT


async def test_close_commits_queued_appends(tmp_path: Path) -> None:
    """Appends queued when close() starts are written at once, without waiting the window."""
    path = tmp_path / "j.db"
    journal = SqliteJournal(path, batch_window=3600)
    pending = asyncio.ensure_future(journal.append([intent("c1", "a")], T0))
    await asyncio.sleep(0)
    await journal.close()
    assert (await pending)[0].key == "c1:a"
    async with SqliteJournal(path) as reopened:
        assert len(await reopened.list()) == 1


async def test_close_after_the_only_caller_was_cancelled(tmp_path: Path) -> None:
    """A queue holding only a cancelled append writes nothing and closes cleanly."""
    path = tmp_path / "j.db"
    journal = SqliteJournal(path, batch_window=3600)
    doomed = asyncio.ensure_future(journal.append([intent("c1", "a")], T0))
    await asyncio.sleep(0)
    doomed.cancel()
    await journal.close()
    assert doomed.cancelled()
    assert journal.commits == 0


@pytest.mark.parametrize("fails", [False, True])
async def test_a_caller_cancelled_during_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """Cancelling a caller whose batch is being written leaves the others' outcome intact."""
    journal = SqliteJournal(tmp_path / "j.db", batch_window=0)
    if fails:

        def broken(requests: object) -> object:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(journal, "_write_appends", broken)
    gate = threading.Event()
    blocker = journal._executor.submit(gate.wait)  # holds the worker thread
    doomed = asyncio.ensure_future(journal.append([intent("c1", "a")], T0))
    other = asyncio.ensure_future(journal.append([intent("c2", "a")], T0))
    for _ in range(3):  # let the flusher hand the batch to the (busy) worker
        await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    blocker.result()
    results = await asyncio.gather(doomed, other, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    if fails:
        assert isinstance(results[1], sqlite3.OperationalError)
    else:
        assert isinstance(results[1], list)
        # Written anyway: a cancelled append may or may not be durable.
        assert [e.key for e in await journal.list()] == ["c1:a", "c2:a"]
    await journal.close()


async def test_two_handles_on_one_file_never_claim_the_same_entry(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would be) split the entries between them."""
    path = tmp_path / "j.db"
    async with SqliteJournal(path, batch_window=0) as one, SqliteJournal(path) as two:
        await one.append([intent(f"c{n}", "a") for n in range(40)], T0)
        batches = await asyncio.gather(
            *(store.claim(f"w{n}", T0, 6, 30) for n, store in enumerate([one, two] * 4))
        )
        ids = [e.entry_id for batch in batches for e in batch]
        assert len(ids) == len(set(ids)) == 40
        with pytest.raises(LeaseLost):
            await two.complete(batches[0][0].entry_id, "w1", T0)


async def test_claim_walks_an_index_not_the_table(tmp_path: Path) -> None:
    """The claim query uses the partial index of runnable heads; no full scan, no sort."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        await journal.append([intent(f"c{n}", "a") for n in range(100)], T0)
    with sqlite3.connect(tmp_path / "j.db") as conn:
        conn.execute("ANALYZE")
        plan = " | ".join(
            row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {CLAIM_SQL}", (T0, T0, 10))
        )
    conn.close()
    assert "USING INDEX entries_runnable" in plan
    assert "TEMP B-TREE" not in plan


async def test_claim_stays_cheap_behind_a_blocked_backlog(tmp_path: Path) -> None:
    """Entries waiting behind an earlier one of their call are not in the claim index."""
    async with SqliteJournal(tmp_path / "j.db", batch_window=0) as journal:
        await journal.append(
            [intent(f"c{n}", step) for n in range(2000) for step in ("a", "b", "c")], T0
        )
        claimed = await journal.claim("w1", T0, 5000, 30)
        assert len(claimed) == 2000
        assert {e.seq for e in claimed} == {1}
        await journal.claim("w1", T0, 1, 30)
    with sqlite3.connect(tmp_path / "j.db") as conn:
        (heads,) = conn.execute("SELECT COUNT(*) FROM entries WHERE head = 1").fetchone()
    conn.close()
    assert heads == 2000


def test_appends_that_returned_survive_sigkill(tmp_path: Path) -> None:
    """A writer killed mid-append loses nothing it reported; its leases expire and free."""
    path = tmp_path / "j.db"
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    appended: list[str] = []
    claimed: list[int] = []
    with proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            verb, _, value = line.strip().partition(" ")
            if verb == "appended":
                appended.append(value)
            elif verb == "claimed":
                claimed.append(int(value))
            if len(appended) >= 600:
                proc.send_signal(signal.SIGKILL)
                break
        # Whatever it printed before dying had returned from append() too.
        rest, errors = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, errors
    appended += [
        v
        for line in rest.splitlines()
        for verb, _, v in [line.partition(" ")]
        if verb == "appended"
    ]
    assert len(claimed) == 10

    async def check() -> None:
        async with SqliteJournal(path) as journal:
            keys = {e.key for e in await journal.list(limit=1_000_000)}
            assert set(appended) <= keys
            for entry_id in claimed:
                entry = await journal.get(entry_id)
                assert entry.state is EntryState.IN_FLIGHT
                assert entry.lease_owner == "doomed"
            assert not {e.entry_id for e in await journal.claim("w2", T0 + 59, 5000, 30)} & set(
                claimed
            )
            retaken = await journal.claim("w2", T0 + 60, 5000, 30)
            assert {e.entry_id for e in retaken} == set(claimed)
            assert {e.attempts for e in retaken} == {2}

    asyncio.run(check())
