"""The checks both stores make before a transition, with the errors they raise."""

from __future__ import annotations

from ._errors import EntryStateError, JournalClosed, LeaseLost, UnknownEntry
from ._types import TRANSITIONS, EntryState


def missing(entry_id: int) -> UnknownEntry:
    """Return the error for an entry id that is not in the journal."""
    return UnknownEntry(
        f"entry {entry_id} is not in the journal: it was never appended, or it was purged",
        entry_id=entry_id,
    )


def closed() -> JournalClosed:
    """Return the error for an operation on a closed store."""
    return JournalClosed("the journal store is closed; open a new one to continue")


def require_lease(
    operation: str, entry_id: int, owner: str, state: EntryState, lease_owner: str | None
) -> None:
    """Raise `LeaseLost` unless the entry is in flight under `owner`."""
    accepted, _ = TRANSITIONS[operation]
    if state in accepted and lease_owner == owner:
        return
    if state is EntryState.IN_FLIGHT:
        why = f"its lease ran out and {lease_owner!r} claimed it since"
    else:
        why = f"it is {state.value} now"
    raise LeaseLost(
        f"cannot {operation} entry {entry_id}: it is no longer in flight under {owner!r} "
        f"({why}); drop it, whoever holds it now will finish it",
        entry_id=entry_id,
        owner=owner,
    )


def require_dead(entry_id: int, state: EntryState) -> None:
    """Raise `EntryStateError` unless the entry may be replayed."""
    accepted, _ = TRANSITIONS["replay"]
    if state not in accepted:
        raise EntryStateError(
            f"cannot replay entry {entry_id}: it is {state.value}, and only dead entries "
            "are replayed (a pending or in-flight entry will run by itself)"
        )


def takeover_note(owner: str | None, lease_until: float | None) -> str:
    """The `last_error` of an entry claimed after its owner's lease ran out.

    The owner's last attempt left no record, so whoever runs the entry next must assume it
    may have written (a create is looked up before it is posted again).
    """
    return (
        f"lease of {owner} ran out at {lease_until!r} with no outcome recorded; the last "
        "attempt may have written"
    )
