"""Fixtures shared by the journal tests: one store of each kind, and intent builders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callresilience.journal import Intent, JournalStore, MemoryJournal, SqliteJournal

#: 2026-01-01T00:00:00Z, the ManualClock's epoch; every test passes times explicitly.
T0 = 1_767_225_600.0
STORES = ["memory", "sqlite"]


def intent(call_id: str, name: str, payload: dict[str, Any] | None = None) -> Intent:
    """Return an intent whose key is ``call_id:name``."""
    return Intent(call_id, f"create_{name}", payload or {"name": name}, f"{call_id}:{name}")


def make_store(kind: str, path: Path) -> JournalStore:
    """Open a store of `kind`; SQLite flushes without a batch window, so no test waits."""
    if kind == "memory":
        return MemoryJournal()
    return SqliteJournal(path / "journal.db", batch_window=0)


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JournalStore]:
    """Each store in turn, closed after the test."""
    journal = make_store(request.param, tmp_path)
    async with journal:
        yield journal
