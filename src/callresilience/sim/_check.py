"""Compare the fake's tables with the run's call history: what is lost, what is doubled. Pure.

Nothing here reads the engine's counters or the journal: the only inputs are the calls as the
simulator saw them and the records the instance holds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..engine import RecordMapping
from ._history import CallHistory

__all__ = ["CheckResult", "check"]

Records = Sequence[Mapping[str, str]]


@attrs.frozen
class CheckResult:
    """What the checker found.

    Attributes:
        lost: Calls that never finished, or whose records are missing or incomplete.
        duplicates: Records beyond the one each call may have (per table and key).
        phone_logs: Phone logs on the instance that belong to the run's calls.
        interactions: Interactions that do.
        work_items: Missed-offer work items that do.
        problems: One line per lost or doubled call, for the operator.
    """

    lost: int
    duplicates: int
    phone_logs: int
    interactions: int
    work_items: int
    problems: tuple[str, ...]


def check(
    calls: Iterable[CallHistory],
    tables: Mapping[str, Records],
    mapping: RecordMapping | None = None,
) -> CheckResult:
    """Check every call of the run against the records of `tables` (table name: records).

    A call is lost when it never reached a final state (ended, abandoned, overflowed), or when
    a record it must have is missing: the phone log of an answered call (with its end time),
    the Interaction of a call answered or missed (linked to the phone log, closed), a work
    item per missed offer. A duplicate is any record beyond the first for the same call and
    table (for work items: the same missed offer).
    """
    m = mapping or RecordMapping()
    logs = _by(tables.get(m.phone_log_table, ()), "call_id")
    interactions = _by(tables.get(m.interaction_table, ()), m.interaction_correlation)
    items = _by(tables.get(m.work_item_table, ()), m.work_item_correlation, ":missed-")
    lost = duplicates = n_logs = n_interactions = n_items = 0
    problems: list[str] = []
    for call in calls:
        wrong: list[str] = []
        extra = 0
        found_logs = logs.get(call.call_id, [])
        found_interactions = interactions.get(call.call_id, [])
        n_logs += len(found_logs)
        n_interactions += len(found_interactions)
        extra += max(0, len(found_logs) - 1) + max(0, len(found_interactions) - 1)
        if call.outcome is None:
            wrong.append("never finished")
        if call.answered:
            if not found_logs:
                wrong.append("phone log missing")
            elif call.outcome == "ended" and not found_logs[0].get("end_time"):
                wrong.append("phone log not closed")
        elif found_logs:
            wrong.append("phone log for a call nobody answered")
        if call.needs_interaction:
            if not found_interactions:
                wrong.append("Interaction missing")
            else:
                wrong += _interaction_problems(call, found_interactions[0], found_logs)
        found_items = Counter(
            str(r.get(m.work_item_correlation, "")) for r in items.get(call.call_id, [])
        )
        n_items += sum(found_items.values())
        expected = {f"{call.call_id}:missed-{attempt}" for attempt in call.missed}
        extra += sum(n - (1 if key in expected else 0) for key, n in found_items.items())
        wrong += [f"work item {key} missing" for key in sorted(expected - set(found_items))]
        if wrong:
            lost += 1
        duplicates += extra
        if wrong or extra:
            doubled = [f"{extra} duplicate record(s)"] if extra else []
            problems.append(f"{call.call_id}: {', '.join(wrong + doubled)}")
    return CheckResult(lost, duplicates, n_logs, n_interactions, n_items, tuple(problems))


def _interaction_problems(
    call: CallHistory, record: Mapping[str, str], logs: Sequence[Mapping[str, str]]
) -> list[str]:
    wrong: list[str] = []
    if call.answered and logs and record.get("channel_metadata_document") != logs[0]["sys_id"]:
        wrong.append("Interaction not linked to its phone log")
    closed = {"ended": "closed_complete", "abandoned": "closed_abandoned"}.get(call.outcome or "")
    if closed is not None and record.get("state") != closed:
        wrong.append(f"Interaction {record.get('state') or 'without state'}, not {closed}")
    return wrong


def _by(records: Records, field: str, cut: str = "") -> dict[str, list[Mapping[str, str]]]:
    """Group records by the call id in `field` (the part before `cut`, if given)."""
    grouped: defaultdict[str, list[Mapping[str, str]]] = defaultdict(list)
    for record in records:
        key = record.get(field, "")
        grouped[key.rsplit(cut, 1)[0] if cut else key].append(record)
    return grouped
