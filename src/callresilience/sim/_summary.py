"""The run's summary: the numbers `--json` writes and the final table shows. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from ..testing import RecordedRequest
from ._check import CheckResult
from ._history import CallHistory

__all__ = ["SUMMARY_KEYS", "BatchUse", "batch_use", "exit_status", "percentiles", "summarize"]

#: The keys of the summary, in order.
SUMMARY_KEYS: Final = (
    "calls",
    "offered",
    "answered",
    "rejected_offers",
    "timed_out_offers",
    "abandoned",
    "overflowed",
    "lost",
    "interactions_expected",
    "interactions_created",
    "phone_logs_created",
    "work_items_created",
    "duplicates",
    "dead_letters",
    "offer_latency_ms",
    "drain_seconds",
)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of `values` (nearest rank), rounded to 0.1; None for no values."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 1)

    return {"p50": rank(0.50), "p99": rank(0.99), "max": round(ordered[-1], 1)}


def summarize(
    calls: Iterable[CallHistory],
    result: CheckResult,
    *,
    dead_letters: int,
    drain_seconds: float | None,
) -> dict[str, Any]:
    """The summary of a run, with exactly `SUMMARY_KEYS`.

    `lost`, `duplicates` and the created counts come from the checker (the fake's tables
    against the history); the offer counts and outcomes from the history; the latency is
    from arrival to the first offer reaching the agents' channel, in milliseconds of run
    time, split by whether the instance was scheduled to be unavailable at arrival, for the
    calls that found a free agent (a call that waited in line waited for an agent, which
    says nothing about ServiceNow).
    """
    calls = list(calls)
    latency: dict[str, list[float]] = {"healthy": [], "outage": []}
    for call in calls:
        if call.offer_latency is not None and not call.queued:
            latency["outage" if call.outage else "healthy"].append(call.offer_latency * 1000)
    return {
        "calls": len(calls),
        "offered": sum(c.offers for c in calls),
        "answered": sum(1 for c in calls if c.answered),
        "rejected_offers": sum(c.rejected for c in calls),
        "timed_out_offers": sum(len(c.missed) for c in calls),
        "abandoned": sum(1 for c in calls if c.outcome == "abandoned"),
        "overflowed": sum(1 for c in calls if c.outcome == "overflowed"),
        "lost": result.lost,
        "interactions_expected": sum(1 for c in calls if c.needs_interaction),
        "interactions_created": result.interactions,
        "phone_logs_created": result.phone_logs,
        "work_items_created": result.work_items,
        "duplicates": result.duplicates,
        "dead_letters": dead_letters,
        "offer_latency_ms": {name: percentiles(values) for name, values in latency.items()},
        "drain_seconds": None if drain_seconds is None else round(drain_seconds, 1),
    }


def exit_status(summary: Mapping[str, Any]) -> int:
    """0 when nothing was lost or doubled, else 1."""
    return 1 if summary.get("lost") or summary.get("duplicates") else 0


#: The Batch API's paths (ServiceNow serves it with and without the version).
_BATCH_PATH: Final = re.compile(r"^/api/now(?:/v1)?/batch/?$")
#: The requests that never reached the instance (nothing in them ran).
_NOT_RECEIVED: Final = frozenset({"refused", "black_holed"})


@attrs.frozen
class BatchUse:
    """How much went through the Batch API during a run, from the instance's request log.

    Attributes:
        requests: Batch API requests that reached the instance.
        writes: The writes they carried: their sub-requests, each a Table API create or
            update the instance ran as a request of its own.
        not_received: Batch API requests that did not reach the instance (a refused
            connection during an outage); nothing in them ran.
    """

    requests: int = 0
    writes: int = 0
    not_received: int = 0

    def describe(self) -> str:
        """One line, e.g. ``Batch API: 12 requests carried 96 writes``."""
        line = f"{self.requests} request{'' if self.requests == 1 else 's'} carried "
        line += f"{self.writes} write{'' if self.writes == 1 else 's'}"
        if self.not_received:
            line += f"; {self.not_received} more did not reach the instance"
        return f"Batch API: {line}"


def batch_use(requests: Iterable[RecordedRequest]) -> BatchUse:
    """Count the Batch API requests in a `FakeServiceNow.requests` log and what they carried.

    The fake logs each sub-request of a batch as the Table API request it is (its table set,
    `batch_id` the batch's id), then the batch request itself (the batch path, no table, no
    `batch_id`). A batch request is counted once, never as a write; its writes are counted
    from its sub-requests.
    """
    sent = writes = not_received = 0
    for request in requests:
        if request.batch_id is not None:
            if request.method != "GET":
                writes += 1
        elif request.method == "POST" and _BATCH_PATH.match(request.path):
            if request.outcome in _NOT_RECEIVED:
                not_received += 1
            else:
                sent += 1
    return BatchUse(sent, writes, not_received)
