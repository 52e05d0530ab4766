"""The contract every journal store keeps; one test suite pins it for all of them."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from ._types import Entry, EntryState, Intent

__all__ = ["JournalStore"]


@runtime_checkable
class JournalStore(Protocol):
    """A durable outbox of intents: append now, run later, exactly once in effect.

    Times are UNIX seconds passed in by the caller (from the injected clock's ``time()``);
    a store never reads a clock. Every method either does all it says or raises and changes
    nothing.

    Rules every store keeps:

    - **Dedupe:** a key appended twice is stored once; the second append returns the entry.
    - **Per-call order:** an entry is claimable only when every earlier entry of its call is
      done, so a dead or pending entry holds back the ones after it.
    - **Leases:** a claimed entry is in flight until ``lease_until``; after that any worker
      may claim it again, and the first worker's outcome is refused with `LeaseLost`.
    - **Folding:** an update (`update_intent`) appended while the create of its record is
      pending and was never claimed may be folded into that create: the create's fields take
      the update's, and the update is stored done (see ``docs/journal.md``). A store that
      never folds keeps the contract too; the drainer then sends the update on its own.
    """

    async def append(self, intents: Sequence[Intent], now: float) -> builtins.list[Entry]:
        """Store intents durably; a key already present returns its entry unchanged.

        Args:
            intents: The intents, in the order their calls need them.
            now: The current UNIX time; becomes `created` and `next_attempt`.

        Returns:
            One entry per intent, in the same order.

        Raises:
            InvalidInput: An argument breaks a rule; nothing of the batch was stored.
        """
        ...

    async def claim(
        self,
        owner: str,
        now: float,
        limit: int,
        lease: float,
        *,
        skip_groups: Collection[str] = frozenset(),
    ) -> builtins.list[Entry]:
        """Take up to `limit` runnable entries, oldest first, and lease them to `owner`.

        Runnable: pending and due, or in flight with an expired lease; and every earlier
        entry of the same call done; and not in one of `skip_groups` (held back, e.g. while
        their scope rides out an outage). Each claimed entry gets ``attempts + 1``.

        Args:
            owner: The worker's id (unique per worker).
            now: The current UNIX time.
            limit: At most this many entries.
            lease: Seconds the worker may hold them before others may take them over.
            skip_groups: Groups whose entries stay where they are for now.

        Returns:
            The claimed entries, ordered by `next_attempt` then `entry_id`.
        """
        ...

    async def complete(
        self,
        entry_id: int,
        owner: str,
        now: float,
        result: Mapping[str, Any] | None = None,
        results: Mapping[str, str] | None = None,
    ) -> Entry:
        """Mark an in-flight entry done and merge `results` into its call's results.

        Args:
            entry_id: The entry.
            owner: The worker that claimed it.
            now: The current UNIX time.
            result: What to keep on the entry (a JSON object), if anything.
            results: Names to sys_ids for later entries of the call, e.g.
                ``{"phone_log": "<sys_id>"}``.

        Returns:
            The entry, now done.

        Raises:
            LeaseLost: The entry is not in flight under `owner` any more.
            UnknownEntry: No such entry.
        """
        ...

    async def retry(
        self, entry_id: int, owner: str, now: float, next_attempt: float, error: str
    ) -> Entry:
        """Put an in-flight entry back to pending, to run at `next_attempt`.

        Raises:
            LeaseLost: The entry is not in flight under `owner` any more.
            UnknownEntry: No such entry.
        """
        ...

    async def kill(self, entry_id: int, owner: str, now: float, error: str) -> Entry:
        """Mark an in-flight entry dead; the later entries of its call wait behind it.

        Raises:
            LeaseLost: The entry is not in flight under `owner` any more.
            UnknownEntry: No such entry.
        """
        ...

    async def reschedule(self, entry_ids: Collection[int], next_attempt: float) -> int:
        """Bring the next attempt of pending entries forward to `next_attempt`; return how many.

        Never later: an entry due earlier keeps its time. Entries that are not pending (in
        flight, done, dead) or do not exist are left alone. For a worker that knows some
        entries wait only on a backoff that no longer makes sense (the instance is back).
        """
        ...

    async def call_results(self, call_id: str) -> dict[str, str]:
        """Return the results merged so far for a call (empty when none)."""
        ...

    async def get(self, entry_id: int) -> Entry:
        """Return one entry.

        Raises:
            UnknownEntry: No such entry.
        """
        ...

    async def list(
        self,
        *,
        state: EntryState | None = None,
        call_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Entry]:
        """Return entries by `entry_id`, optionally only of one state and/or one call."""
        ...

    async def counts(self) -> dict[EntryState, int]:
        """Return how many entries are in each state (every state present)."""
        ...

    async def oldest_pending(self, now: float) -> float | None:
        """Return the age in seconds of the oldest pending or in-flight entry, or None."""
        ...

    async def dead(self, limit: int = 100) -> builtins.list[Entry]:
        """Return dead entries by `entry_id`."""
        ...

    async def replay(self, entry_id: int, now: float) -> Entry:
        """Send a dead entry back to pending, due now, with its attempts reset.

        Raises:
            EntryStateError: The entry is not dead.
            UnknownEntry: No such entry.
        """
        ...

    async def purge_done(self, older_than: float, now: float) -> int:
        """Delete done entries of finished calls last updated at least `older_than` ago.

        Only calls with no entry left to run are touched; a call whose entries are all
        purged loses its results too.

        Returns:
            How many entries were deleted.
        """
        ...

    async def close(self) -> None:
        """Finish pending appends and release the store; later calls raise `JournalClosed`."""
        ...

    async def __aenter__(self) -> JournalStore:
        """Return the store."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...
