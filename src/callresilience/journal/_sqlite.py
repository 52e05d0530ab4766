"""The SQLite journal: one local file, WAL, group-committed appends and finishes.

Every SQLite call runs on one dedicated worker thread, reached with `run_in_executor`. That is
a stdlib thread hop instead of the aiosqlite dependency: group commit needs control of the
batches anyway, and one thread owning the connection means no locking of our own. The event
loop only queues appends and hands batches over; it never waits on the disk.

Appends are group-committed: concurrent `append` calls queue, and one writer task flushes the
queue in a single transaction once the oldest request has waited `batch_window` seconds (or at
once when `max_batch` intents are queued, or when the previous commit took that long already).
Each caller resumes only after the commit, so an append that returned is on disk. Completes,
retries and kills are grouped too, without a window: those queued while the worker thread is
busy share its next transaction. With
``synchronous=FULL`` a commit survives a power cut; with ``NORMAL`` it survives a crash of the
process but the last commits may be lost on a power cut.

The store keeps no state outside the file, so several processes may open the same journal
(an operator's replay from a shell while the service runs, say): every write is one
``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import attrs

from .._errors import InvalidInput
from .._model import check_identifier
from . import _rules
from ._errors import JournalError
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

__all__ = ["SqliteJournal"]

_T = TypeVar("_T")

#: Bumped whenever the tables change; a file from a newer version is refused, not misread.
SCHEMA_VERSION: Final = 2

_SCHEMA: Final = (
    """
    CREATE TABLE entries (
        entry_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a purge
        call_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        -- 1 when the entry is pending or in flight and every earlier entry of its call is
        -- done: the only entries a claim may take, kept in a small partial index.
        head INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt REAL NOT NULL,
        lease_owner TEXT,
        lease_until REAL,
        last_error TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        result TEXT,
        grp TEXT NOT NULL DEFAULT '',  -- Intent.group; claims may skip some
        UNIQUE (call_id, seq)
    )
    """,
    # A claim walks this index from the oldest due head and stops after `limit` rows, whatever
    # the backlog; entries blocked behind an earlier one of their call are not in it.
    "CREATE INDEX entries_runnable ON entries (next_attempt, entry_id) WHERE head = 1",
    # counts(), oldest_pending(), dead() and list(state=...).
    "CREATE INDEX entries_state ON entries (state, created)",
    "CREATE TABLE calls (call_id TEXT PRIMARY KEY, results TEXT NOT NULL) WITHOUT ROWID",
)

_COLUMNS: Final = (
    "entry_id, call_id, seq, kind, payload, key, state, attempts, next_attempt, lease_owner, "
    "lease_until, last_error, created, updated, result, grp"
)

#: How to bring an older file up to `SCHEMA_VERSION`, one step per version.
_MIGRATIONS: Final = {
    1: ("ALTER TABLE entries ADD COLUMN grp TEXT NOT NULL DEFAULT ''",),
}

#: The oldest runnable entries: a walk of the partial index `entries_runnable`, no table scan.
CLAIM_SQL: Final = (
    f"SELECT {_COLUMNS} FROM entries "  # noqa: S608 (constant columns)
    "WHERE head = 1 AND next_attempt <= ? AND (state = 'pending' OR lease_until <= ?) "
    "ORDER BY next_attempt, entry_id LIMIT ?"
)


def claim_sql(skipped: int) -> str:
    """`CLAIM_SQL`, leaving out `skipped` groups given as parameters after the two times."""
    if not skipped:
        return CLAIM_SQL
    marks = ", ".join("?" * skipped)
    return CLAIM_SQL.replace("ORDER BY", f"AND grp NOT IN ({marks}) ORDER BY")


Synchronous = Literal["FULL", "NORMAL"]


_STATES: Final = {state.value: state for state in EntryState}


def _entry(row: tuple[Any, ...]) -> Entry:
    """The entry of a row of `_COLUMNS` (positional: `Entry`'s fields are in that order)."""
    return Entry(
        row[0],
        row[1],
        row[2],
        row[3],
        JsonObject(row[4]),
        row[5],
        _STATES[row[6]],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        None if row[14] is None else JsonObject(row[14]),
        row[15],
    )


# Positions in a row of `_COLUMNS` that a finish changes.
_STATE, _NEXT_ATTEMPT, _LEASE_OWNER, _LEASE_UNTIL, _LAST_ERROR, _UPDATED, _RESULT = (
    6,
    8,
    9,
    10,
    11,
    13,
    14,
)


def _landed(row: tuple[Any, ...], state: EntryState, now: float, **changes: Any) -> tuple[Any, ...]:
    """The row as a finish leaves it: in `state` since `now`, out of anyone's lease.

    `changes` sets ``next_attempt``, ``last_error`` or ``result`` (JSON text).
    """
    landed = list(row)
    landed[_STATE] = state.value
    landed[_LEASE_OWNER] = landed[_LEASE_UNTIL] = None
    landed[_UPDATED] = now
    for name, value in changes.items():
        landed[_CHANGEABLE[name]] = value
    return tuple(landed)


_CHANGEABLE: Final = {"next_attempt": _NEXT_ATTEMPT, "last_error": _LAST_ERROR, "result": _RESULT}


#: Values per `IN (...)` list: within SQLite's oldest limit on parameters (999).
_IN_CHUNK: Final = 500


def _rows_in(
    conn: sqlite3.Connection, sql: str, values: Iterable[Any], before: tuple[Any, ...] = ()
) -> builtins.list[tuple[Any, ...]]:
    """Run `sql` for `values`, a chunk at a time.

    `sql` has ``{}`` where the ``IN`` list goes, after the parameters `before`.
    """
    ordered = sorted(values)
    rows: builtins.list[tuple[Any, ...]] = []
    for start in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows += conn.execute(sql.format(marks), (*before, *chunk)).fetchall()
    return rows


def _results_of(conn: sqlite3.Connection, call_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """The stored results of these calls (calls without any are left out)."""
    return {
        call_id: json.loads(results)
        for call_id, results in _rows_in(
            conn, "SELECT call_id, results FROM calls WHERE call_id IN ({})", call_ids
        )
    }


def _connect(path: str, synchronous: Synchronous) -> sqlite3.Connection:
    """Open the file and bring its schema up to date (on the worker thread)."""
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Another process (an operator's shell) may hold the write lock for a moment.
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(
                f"{path}: SQLite would not use WAL mode (it answered {mode!r}); put the "
                "journal on a local filesystem, or use MemoryJournal for an in-memory journal"
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version in _MIGRATIONS:
                for step in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[step]:
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise JournalError(
                    f"{path}: journal schema version {version}, this callresilience reads "
                    f"version {SCHEMA_VERSION}; open it with the version that wrote it"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn


@attrs.define
class _Append:
    """One caller's `append`, waiting for the commit that carries it."""

    intents: builtins.list[Intent]
    now: float
    queued: float
    future: asyncio.Future[builtins.list[Entry]]


@attrs.define
class _Finish:
    """One caller's complete, retry or kill, waiting for the commit that carries it."""

    operation: str
    args: tuple[Any, ...]
    future: asyncio.Future[Entry]


@attrs.define
class _Open:
    """An entry of a call that is not done, as an append transaction sees it."""

    key: str
    seq: int
    kind: str
    payload: str
    state: EntryState
    attempts: int
    last_error: str | None
    group: str
    #: Its row in this transaction's inserts, or None when it was in the file before.
    new: int | None = None


@attrs.define
class _Call:
    """What an append transaction knows of one call: its last seq and its open entries."""

    last: int = 0
    open: dict[str, _Open] = attrs.field(factory=dict)  # by key, in seq order


class _Appends:
    """One transaction's appends, read with a few queries and written with one statement.

    The same rules as appending intents one by one (see `JournalStore.append` and `_fold`):
    each intent's key is looked for first, seqs follow the call's last, a head is an entry
    with nothing open before it, and an update folds into its record's open create.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def write(
        self, requests: builtins.list[tuple[builtins.list[Intent], float]]
    ) -> builtins.list[builtins.list[Entry]]:
        conn = self._conn
        keys = {intent.key for intents, _ in requests for intent in intents}
        # Most keys are new: look for them in the key index alone, then read the few found.
        present = [
            key for (key,) in _rows_in(conn, "SELECT key FROM entries WHERE key IN ({})", keys)
        ]
        sql = f"SELECT {_COLUMNS} FROM entries WHERE key IN ({{}})"  # noqa: S608
        found = {row[5]: row for row in _rows_in(conn, sql, present)} if present else {}
        calls = self._calls({i.call_id for intents, _ in requests for i in intents})
        inserts: builtins.list[builtins.list[Any]] = []
        folds: dict[str, str] = {}  # key of a create in the file: its new payload
        # Each intent's entry as a row of `_COLUMNS`, its id filled in once inserted.
        answers: builtins.list[builtins.list[tuple[Any, ...]]] = []
        for intents, now in requests:
            answer = []
            for intent in intents:
                if intent.key in found:
                    answer.append(found[intent.key])
                    continue
                call = calls[intent.call_id]
                into = self._fold(call, intent, inserts, folds, found)
                state = EntryState.PENDING if into is None else EntryState.DONE
                result = None if into is None else folded_result(into)
                call.last += 1
                head = int(not call.open and into is None)
                if into is None:
                    call.open[intent.key] = _Open(
                        intent.key, call.last, intent.kind, intent.payload_json, state, 0,
                        None, intent.group, new=len(inserts),
                    )  # fmt: skip
                inserts.append(
                    [intent.call_id, call.last, intent.kind, intent.payload_json, intent.key,
                     state.value, head, now, now, now, intent.group, result]
                )  # fmt: skip
                row = (
                    None, intent.call_id, call.last, intent.kind, intent.payload_json,
                    intent.key, state.value, 0, now, None, None, None, now, now, result,
                    intent.group,
                )  # fmt: skip
                found[intent.key] = row
                answer.append(row)
            answers.append(answer)
        conn.executemany(
            "UPDATE entries SET payload = ? WHERE key = ?",
            [(payload, key) for key, payload in folds.items()],
        )
        conn.executemany(
            "INSERT INTO entries (call_id, seq, kind, payload, key, state, head, attempts, "
            "next_attempt, created, updated, grp, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            inserts,
        )
        # AUTOINCREMENT under the write lock: the rows got consecutive ids, in order.
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0] if inserts else 0
        first = last - len(inserts) + 1
        ids = {insert[4]: first + n for n, insert in enumerate(inserts)}
        return [
            [_entry((ids.get(row[5], row[0]), *row[1:])) for row in answer] for answer in answers
        ]

    def _calls(self, call_ids: set[str]) -> dict[str, _Call]:
        """The last seq and the open entries of each call, from the file."""
        calls = {call_id: _Call() for call_id in call_ids}
        for call_id, last in _rows_in(
            self._conn,
            "SELECT call_id, MAX(seq) FROM entries WHERE call_id IN ({}) GROUP BY call_id",
            call_ids,
        ):
            calls[call_id].last = last
        rows = _rows_in(
            self._conn,
            "SELECT call_id, key, seq, kind, payload, state, attempts, last_error, grp "
            "FROM entries WHERE state != 'done' AND call_id IN ({})",
            call_ids,
        )
        for call_id, key, seq, kind, payload, state, attempts, last_error, group in sorted(
            rows, key=lambda row: row[2]
        ):
            calls[call_id].open[key] = _Open(
                key, seq, kind, payload, EntryState(state), attempts, last_error, group
            )
        return calls

    @staticmethod
    def _fold(
        call: _Call,
        intent: Intent,
        inserts: builtins.list[builtins.list[Any]],
        folds: dict[str, str],
        found: dict[str, Any],
    ) -> str | None:
        """Fold an update into its record's open create; return the create's key if so."""
        key = create_key(intent)
        create = None if key is None else call.open.get(key)
        if create is None or create.group != intent.group:
            return None
        if not open_create(create.kind, create.state, create.attempts, create.last_error):
            return None
        between = [(o.kind, o.payload) for o in call.open.values() if o.seq > create.seq]
        payload = fold(json.loads(create.payload), intent, between)
        if payload is None:
            return None
        create.payload = payload
        if create.new is None:
            folds[create.key] = payload
        else:
            inserts[create.new][3] = payload
        # A later append of the create's key in this batch returns it as it is now.
        row = found.get(create.key)
        if row is not None:
            found[create.key] = (*row[:4], payload, *row[5:])
        return create.key


class SqliteJournal:
    """A `JournalStore` in one SQLite file: survives a crash of the process and a restart.

    Opening creates the file and its schema if needed (a few milliseconds, synchronous: open
    it at startup, not on the hot path). Close it with ``await journal.close()`` or
    ``async with``.

    Args:
        path: The database file.
        synchronous: ``"FULL"`` (the default) makes every commit survive a power cut;
            ``"NORMAL"`` survives a crash of the process only, for about 10x the speed of
            one-at-a-time writes.
        batch_window: How long the first queued append waits for others to share its
            commit, in seconds.
        max_batch: Flush at once when this many intents are queued (one caller's bigger
            batch is still written whole, in one transaction).

    Raises:
        InvalidInput: An argument breaks a rule.
        JournalError: The file cannot hold a journal (no WAL, or a newer schema).
        sqlite3.Error: SQLite could not open the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        batch_window: float = 0.002,
        max_batch: int = 500,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidInput(
                f"synchronous: {synchronous!r} is not allowed; use 'FULL' or 'NORMAL'",
                field="synchronous",
            )
        if batch_window != 0:
            batch_window = check_duration("batch_window", batch_window)
        self._path = os.fspath(path)
        self._synchronous: Synchronous = synchronous
        self._batch_window = float(batch_window)
        self._max_batch = check_count("max_batch", max_batch, 1)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="callresilience-journal"
        )
        try:
            self._conn = self._executor.submit(_connect, self._path, synchronous).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        self._queue: collections.deque[_Append] = collections.deque()
        self._queued = 0
        self._flusher: asyncio.Task[None] | None = None
        self._finishes: builtins.list[_Finish] = []
        self._finisher: asyncio.Task[None] | None = None
        # Replaced with each new writer task, so a store may outlive one event loop.
        self._wake = asyncio.Event()
        self._commits = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteJournal({self._path!r}, synchronous={self._synchronous!r})"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def commits(self) -> int:
        """How many write transactions changed the file so far (for tests and metrics)."""
        return self._commits

    # -- the worker thread -------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, relaxed: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. `relaxed` commits without waiting for the disk.

        Finishing an entry (complete, retry, kill) may be relaxed even with ``FULL``: in WAL
        mode a ``NORMAL`` commit survives a crash of the process, and if a power cut undoes
        it, the entry is back in flight under its (durable) claim, its lease runs out, and
        the next worker looks the record up before writing again. Appends and claims are
        never relaxed: a lost claim would hide that an attempt may have written.
        """
        conn = self._conn
        before = conn.total_changes
        relax = relaxed and self._synchronous == "FULL"
        if relax:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._transaction_body(conn):
                yield conn
        finally:
            if relax:
                conn.execute("PRAGMA synchronous = FULL")
        if conn.total_changes != before:
            self._commits += 1

    @contextlib.contextmanager
    def _transaction_body(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # pragma: no branch (a failed COMMIT may have ended it)
                conn.execute("ROLLBACK")
            raise

    def _select(self, conn: sqlite3.Connection, entry_id: int) -> Entry:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE entry_id = ?",  # noqa: S608 (constant columns)
            (entry_id,),
        ).fetchone()
        if row is None:
            raise _rules.missing(entry_id)
        return _entry(row)

    def _write_appends(
        self, requests: builtins.list[tuple[builtins.list[Intent], float]]
    ) -> builtins.list[builtins.list[Entry]]:
        with self._transaction() as conn:
            return _Appends(conn).write(requests)

    def _claim(
        self, owner: str, now: float, limit: int, lease: float, skip: frozenset[str]
    ) -> builtins.list[Entry]:
        with self._transaction() as conn:
            rows = conn.execute(claim_sql(len(skip)), (now, now, *sorted(skip), limit)).fetchall()
            # A taken-over entry (its owner's lease ran out) says so in last_error.
            notes = [
                _rules.takeover_note(row[9], row[10]) if row[6] == "in_flight" else row[11]
                for row in rows
            ]
            conn.executemany(
                "UPDATE entries SET state = 'in_flight', lease_owner = ?, lease_until = ?, "
                "attempts = attempts + 1, updated = ?, last_error = ? WHERE entry_id = ?",
                [
                    (owner, now + lease, now, note, row[0])
                    for row, note in zip(rows, notes, strict=True)
                ],
            )
        return [
            _entry(
                (*row[:6], EntryState.IN_FLIGHT.value, row[7] + 1, row[8], owner, now + lease, note,
                 row[12], now, *row[14:])
            )
            for row, note in zip(rows, notes, strict=True)
        ]  # fmt: skip

    def _entries(self, conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, tuple[Any, ...]]:
        """The entries with these ids that exist, as rows of `_COLUMNS`, by id."""
        sql = f"SELECT {_COLUMNS} FROM entries WHERE entry_id IN ({{}})"  # noqa: S608
        return {row[0]: row for row in _rows_in(conn, sql, ids)}

    def _write_finishes(
        self, finishes: builtins.list[tuple[str, tuple[Any, ...]]]
    ) -> builtins.list[Entry | JournalError]:
        """Run complete, retry and kill requests in one relaxed transaction, in order.

        Each returns its entry, or the `JournalError` (`LeaseLost`, `UnknownEntry`) it raised
        before changing anything; any other error undoes the whole batch. The entries and
        their calls' results are read with one query each, and the changes are written with
        one statement per kind of change, whatever the number of finishes.
        """
        outcomes: builtins.list[Entry | JournalError] = []
        done: builtins.list[tuple[Any, ...]] = []
        heads: builtins.list[tuple[str, int]] = []
        retried: builtins.list[tuple[Any, ...]] = []
        killed: builtins.list[tuple[Any, ...]] = []
        with self._transaction(relaxed=True) as conn:
            rows = self._entries(conn, {args[0] for _, args in finishes})
            merged = _results_of(
                conn,
                {
                    rows[args[0]][1]
                    for operation, args in finishes
                    if operation == "complete" and args[4] and args[0] in rows
                },
            )
            changed: set[str] = set()
            for operation, args in finishes:
                entry_id, owner, now = args[0], args[1], args[2]
                row = rows.get(entry_id)
                try:
                    if row is None:
                        raise _rules.missing(entry_id)
                    state = _STATES[row[_STATE]]
                    _rules.require_lease(operation, entry_id, owner, state, row[_LEASE_OWNER])
                except JournalError as error:
                    outcomes.append(error)
                    continue
                call_id, seq = row[1], row[2]
                if operation == "complete":
                    result_json, results = args[3], args[4]
                    done.append((result_json, now, entry_id))
                    # Every earlier entry of the call is done, so the next one not done yet
                    # (folded updates are) becomes claimable.
                    heads.append((call_id, seq))
                    if results:
                        merged.setdefault(call_id, {}).update(results)
                        changed.add(call_id)
                    row = _landed(row, EntryState.DONE, now, last_error=None, result=result_json)
                elif operation == "retry":
                    next_attempt, note = args[3], args[4]
                    retried.append((next_attempt, note, now, entry_id))
                    row = _landed(
                        row, EntryState.PENDING, now, next_attempt=next_attempt, last_error=note
                    )
                else:
                    reason = args[3]
                    killed.append((reason, now, entry_id))
                    row = _landed(row, EntryState.DEAD, now, last_error=reason)
                rows[entry_id] = row  # a second finish of it in this batch sees this
                outcomes.append(_entry(row))
            conn.executemany(
                "UPDATE entries SET state = 'done', head = 0, lease_owner = NULL, "
                "lease_until = NULL, last_error = NULL, result = ?, updated = ? "
                "WHERE entry_id = ?",
                done,
            )
            conn.executemany(
                "UPDATE entries SET head = 1 WHERE entry_id = (SELECT entry_id FROM entries "
                "WHERE call_id = ? AND seq > ? AND state != 'done' ORDER BY seq LIMIT 1) "
                "AND state = 'pending'",
                heads,
            )
            conn.executemany(
                "UPDATE entries SET state = 'pending', lease_owner = NULL, lease_until = NULL, "
                "next_attempt = ?, last_error = ?, updated = ? WHERE entry_id = ?",
                retried,
            )
            conn.executemany(
                "UPDATE entries SET state = 'dead', head = 0, lease_owner = NULL, "
                "lease_until = NULL, last_error = ?, updated = ? WHERE entry_id = ?",
                killed,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO calls (call_id, results) VALUES (?, ?)",
                [(c, json.dumps(merged[c], separators=(",", ":"))) for c in sorted(changed)],
            )
        return outcomes

    def _reschedule(self, ids: builtins.list[int], next_attempt: float) -> int:
        # Relaxed: should a power cut undo it, the entries only run at their old time.
        with self._transaction(relaxed=True) as conn:
            due = [
                (next_attempt, entry_id)
                for (entry_id,) in _rows_in(
                    conn,
                    "SELECT entry_id FROM entries WHERE state = 'pending' AND next_attempt > ? "
                    "AND entry_id IN ({})",
                    ids,
                    (next_attempt,),
                )
            ]
            conn.executemany("UPDATE entries SET next_attempt = ? WHERE entry_id = ?", due)
        return len(due)

    def _replay(self, entry_id: int, now: float) -> Entry:
        with self._transaction() as conn:
            entry = self._select(conn, entry_id)
            _rules.require_dead(entry_id, entry.state)
            # A dead entry has every earlier entry of its call done (it was claimed once).
            conn.execute(
                "UPDATE entries SET state = 'pending', head = 1, attempts = 0, "
                "next_attempt = ?, updated = ? WHERE entry_id = ?",
                (now, now, entry_id),
            )
            return self._select(conn, entry_id)

    def _purge(self, cutoff: float) -> int:
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM entries WHERE state = 'done' AND updated <= ? AND call_id NOT IN "
                "(SELECT call_id FROM entries WHERE state IN ('pending', 'in_flight', 'dead'))",
                (cutoff,),
            )
            purged = cursor.rowcount
            if purged:
                conn.execute(
                    "DELETE FROM calls WHERE NOT EXISTS "
                    "(SELECT 1 FROM entries WHERE entries.call_id = calls.call_id)"
                )
            return purged

    def _call_results(self, call_id: str) -> dict[str, str]:
        return _results_of(self._conn, [call_id]).get(call_id, {})

    def _get(self, entry_id: int) -> Entry:
        return self._select(self._conn, entry_id)

    def _list(
        self, state: EntryState | None, call_id: str | None, limit: int, offset: int
    ) -> builtins.list[Entry]:
        where: builtins.list[str] = []
        params: builtins.list[object] = []
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        if call_id is not None:
            where.append("call_id = ?")
            params.append(call_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM entries {clause}"  # noqa: S608 (constant fragments)
            "ORDER BY entry_id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [_entry(row) for row in rows]

    def _counts(self) -> dict[EntryState, int]:
        counts = dict.fromkeys(EntryState, 0)
        for state, count in self._conn.execute(
            "SELECT state, COUNT(*) FROM entries GROUP BY state"
        ):
            counts[EntryState(state)] = count
        return counts

    def _oldest(self) -> float | None:
        row = self._conn.execute(
            "SELECT MIN(created) FROM entries WHERE state IN ('pending', 'in_flight')"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _query(self, sql: str) -> builtins.list[tuple[Any, ...]]:
        return self._conn.execute(sql).fetchall()

    # -- the event loop ----------------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise _rules.closed()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def append(self, intents: Sequence[Intent], now: float) -> builtins.list[Entry]:
        """Store intents durably, sharing a commit with concurrent callers.

        See `JournalStore.append`. If the caller is cancelled while waiting, the intents may
        or may not have been written; append them again (the keys make that safe).
        """
        if self._closed:
            raise _rules.closed()
        batch = check_intents(intents)
        now = check_time("now", now)
        if not batch:
            return []
        loop = asyncio.get_running_loop()
        request = _Append(batch, now, loop.time(), loop.create_future())
        self._queue.append(request)
        self._queued += len(batch)
        if self._flusher is None or self._flusher.done():
            self._wake = asyncio.Event()
            self._flusher = loop.create_task(self._flush(self._wake))
        elif self._queued >= self._max_batch:
            self._wake.set()
        return await request.future

    async def _flush(self, wake: asyncio.Event) -> None:
        """Write the queue, a batch per transaction, until it is empty."""
        loop = asyncio.get_running_loop()
        while self._queue:
            wait = self._queue[0].queued + self._batch_window - loop.time()
            if wait > 0 and self._queued < self._max_batch and not self._closed:
                wake.clear()
                timer = loop.call_later(wait, wake.set)
                await wake.wait()
                timer.cancel()
            taken: builtins.list[_Append] = []
            count = 0
            while self._queue and (
                not count or count + len(self._queue[0].intents) <= self._max_batch
            ):
                request = self._queue.popleft()
                self._queued -= len(request.intents)
                if not request.future.done():  # a cancelled caller's intents are skipped
                    taken.append(request)
                    count += len(request.intents)
            if not taken:
                continue
            try:
                written = await loop.run_in_executor(
                    self._executor,
                    self._write_appends,
                    [(request.intents, request.now) for request in taken],
                )
            except Exception as error:
                for request in taken:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            for request, entries in zip(taken, written, strict=True):
                if not request.future.done():
                    request.future.set_result(entries)

    async def _finish(self, operation: str, *args: Any) -> Entry:
        """Queue a complete, retry or kill to share a transaction with concurrent ones."""
        if self._closed:
            raise _rules.closed()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Entry] = loop.create_future()
        self._finishes.append(_Finish(operation, args, future))
        if self._finisher is None or self._finisher.done():
            self._finisher = loop.create_task(self._flush_finishes())
        return await future

    async def _flush_finishes(self) -> None:
        """Write the queued finishes, all that queued meanwhile per transaction."""
        loop = asyncio.get_running_loop()
        while self._finishes:
            # Skipped if the caller was cancelled: the entry stays in flight and runs again.
            taken = [f for f in self._finishes if not f.future.done()]
            self._finishes = []
            if not taken:
                continue
            outcomes: builtins.list[Entry | Exception]
            try:
                outcomes = [
                    *await loop.run_in_executor(
                        self._executor,
                        self._write_finishes,
                        [(f.operation, f.args) for f in taken],
                    )
                ]
            except Exception as error:
                outcomes = [error] * len(taken)
            for finish, outcome in zip(taken, outcomes, strict=True):
                if finish.future.done():
                    continue
                if isinstance(outcome, Exception):
                    finish.future.set_exception(outcome)
                else:
                    finish.future.set_result(outcome)

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
        return await self._run(
            self._claim,
            check_owner(owner),
            check_time("now", now),
            check_count("limit", limit, 1),
            check_duration("lease", lease),
            check_groups(skip_groups),
        )

    async def complete(
        self,
        entry_id: int,
        owner: str,
        now: float,
        result: Mapping[str, Any] | None = None,
        results: Mapping[str, str] | None = None,
    ) -> Entry:
        """Mark an in-flight entry done; see `JournalStore.complete`."""
        return await self._finish(
            "complete",
            check_entry_id(entry_id),
            check_owner(owner),
            check_time("now", now),
            None if result is None else encode_json("result", result),
            check_results(results),
        )

    async def retry(
        self, entry_id: int, owner: str, now: float, next_attempt: float, error: str
    ) -> Entry:
        """Send an in-flight entry back to pending; see `JournalStore.retry`."""
        return await self._finish(
            "retry",
            check_entry_id(entry_id),
            check_owner(owner),
            check_time("now", now),
            check_time("next_attempt", next_attempt),
            clip_error(error),
        )

    async def kill(self, entry_id: int, owner: str, now: float, error: str) -> Entry:
        """Mark an in-flight entry dead; see `JournalStore.kill`."""
        return await self._finish(
            "kill",
            check_entry_id(entry_id),
            check_owner(owner),
            check_time("now", now),
            clip_error(error),
        )

    async def call_results(self, call_id: str) -> dict[str, str]:
        """Return a call's merged results; see `JournalStore.call_results`."""
        return await self._run(self._call_results, check_identifier("call_id", call_id))

    async def get(self, entry_id: int) -> Entry:
        """Return one entry; see `JournalStore.get`."""
        return await self._run(self._get, check_entry_id(entry_id))

    async def list(
        self,
        *,
        state: EntryState | None = None,
        call_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Entry]:
        """Return entries by id, filtered; see `JournalStore.list`."""
        return await self._run(
            self._list,
            check_state(state),
            None if call_id is None else check_identifier("call_id", call_id),
            check_count("limit", limit, 0),
            check_count("offset", offset, 0),
        )

    async def counts(self) -> dict[EntryState, int]:
        """Return the number of entries in each state; see `JournalStore.counts`."""
        return await self._run(self._counts)

    async def oldest_pending(self, now: float) -> float | None:
        """Return the age of the oldest unfinished entry; see `JournalStore.oldest_pending`."""
        now = check_time("now", now)
        oldest = await self._run(self._oldest)
        return None if oldest is None else now - oldest

    async def dead(self, limit: int = 100) -> builtins.list[Entry]:
        """Return dead entries by id; see `JournalStore.dead`."""
        return await self.list(state=EntryState.DEAD, limit=limit)

    async def reschedule(self, entry_ids: Collection[int], next_attempt: float) -> int:
        """Bring pending entries forward; see `JournalStore.reschedule`."""
        ids = sorted({check_entry_id(i) for i in entry_ids})
        return await self._run(self._reschedule, ids, check_time("next_attempt", next_attempt))

    async def replay(self, entry_id: int, now: float) -> Entry:
        """Send a dead entry back to pending; see `JournalStore.replay`."""
        return await self._run(self._replay, check_entry_id(entry_id), check_time("now", now))

    async def purge_done(self, older_than: float, now: float) -> int:
        """Delete old done entries of finished calls; see `JournalStore.purge_done`."""
        cutoff = check_time("now", now) - check_time("older_than", older_than)
        return await self._run(self._purge, cutoff)

    async def pragma(self, name: Literal["journal_mode", "synchronous", "user_version"]) -> Any:
        """Return the value of one of the pragmas the store sets (for checks and tests).

        Args:
            name: The pragma.

        Returns:
            SQLite's answer, e.g. ``"wal"`` or ``2`` (FULL) for synchronous.
        """
        if name not in ("journal_mode", "synchronous", "user_version"):
            raise InvalidInput(f"name: {name!r} is not a pragma the store sets", field="name")
        rows = await self._run(self._query, f"PRAGMA {name}")
        return rows[0][0]

    async def close(self) -> None:
        """Commit the appends still queued, then close the file and stop the worker thread.

        Later calls raise `JournalClosed`; closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._wake.set()  # skip what is left of the batch window
            await self._flusher
        if self._finisher is not None:
            await self._finisher
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

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
