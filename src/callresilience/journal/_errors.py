"""The journal's errors; each leaves the journal exactly as it was.

::

    CallResilienceError
    └── JournalError            the journal refused an operation
        ├── LeaseLost           the entry is no longer in flight under this owner
        ├── UnknownEntry        no entry has this id (never appended, or purged)
        ├── EntryStateError     the entry's state does not allow the operation
        └── JournalClosed       the store was closed
"""

from __future__ import annotations

from .._errors import CallResilienceError

__all__ = ["EntryStateError", "JournalClosed", "JournalError", "LeaseLost", "UnknownEntry"]


class JournalError(CallResilienceError):
    """The journal refused an operation; nothing was changed."""


class LeaseLost(JournalError):
    """The entry is no longer in flight under this owner; the outcome was not recorded.

    Its lease ran out and another worker claimed it, or it was already completed, retried or
    killed. The worker must drop the entry: whoever holds it now will finish it.

    Args:
        message: What happened and what to do.
        entry_id: The entry the worker tried to finish.
        owner: The worker that no longer holds it.
    """

    def __init__(self, message: str, *, entry_id: int, owner: str) -> None:
        super().__init__(message)
        self.entry_id = entry_id
        self.owner = owner


class UnknownEntry(JournalError, LookupError):
    """No entry has this id: it was never appended, or it was purged.

    Args:
        message: What was looked up.
        entry_id: The id that was not found.
    """

    def __init__(self, message: str, *, entry_id: int) -> None:
        super().__init__(message)
        self.entry_id = entry_id


class EntryStateError(JournalError):
    """The entry's state does not allow the operation (for example replaying a live entry)."""


class JournalClosed(JournalError):
    """The store was closed; open a new one to continue."""
