"""The public surface of callresilience.journal, pinned."""

from __future__ import annotations

import callresilience
import callresilience.journal


def test_exported_members() -> None:
    """__all__ is alphabetical and complete, and every exported name is documented."""
    exported = callresilience.journal.__all__
    assert exported == sorted(exported)
    assert {
        "Entry",
        "EntryState",
        "EntryStateError",
        "Intent",
        "JournalClosed",
        "JournalError",
        "JournalStore",
        "LeaseLost",
        "MemoryJournal",
        "SqliteJournal",
        "UnknownEntry",
    } <= set(exported)
    public = {
        name
        for name, value in vars(callresilience.journal).items()
        if not name.startswith("_") and not isinstance(value, type(callresilience))
    }
    public.discard("annotations")
    assert public == set(exported)
    for name in exported:
        assert (getattr(callresilience.journal, name).__doc__ or "").strip(), name


def test_journal_errors_share_the_root() -> None:
    """Every journal error is a CallResilienceError."""
    for name in ("EntryStateError", "JournalClosed", "LeaseLost", "UnknownEntry"):
        error = getattr(callresilience.journal, name)
        assert issubclass(error, callresilience.journal.JournalError)
        assert issubclass(error, callresilience.CallResilienceError)
