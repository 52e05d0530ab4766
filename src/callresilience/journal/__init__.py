"""The journal: a durable outbox of ServiceNow writes, run later and exactly once in effect.

The engine appends an `Intent` for each write; a drainer claims entries, performs them and
completes, retries or kills each. Stores share one contract, `JournalStore`:

- `MemoryJournal`: in memory, for tests (and for those who accept losing it on restart).
- `SqliteJournal`: one local SQLite file in WAL mode, group-committed; survives crashes.
"""

from __future__ import annotations

from ._drainer import (
    Drainer,
    DrainerConfig,
    DrainerEvent,
    RecordDead,
    RecordWritten,
    create_intent,
    update_intent,
)
from ._errors import EntryStateError, JournalClosed, JournalError, LeaseLost, UnknownEntry
from ._memory import MemoryJournal
from ._sqlite import SqliteJournal
from ._store import JournalStore
from ._types import Entry, EntryState, Intent, JsonObject

__all__ = [
    "Drainer",
    "DrainerConfig",
    "DrainerEvent",
    "Entry",
    "EntryState",
    "EntryStateError",
    "Intent",
    "JournalClosed",
    "JournalError",
    "JournalStore",
    "JsonObject",
    "LeaseLost",
    "MemoryJournal",
    "RecordDead",
    "RecordWritten",
    "SqliteJournal",
    "UnknownEntry",
    "create_intent",
    "update_intent",
]
