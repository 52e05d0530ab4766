"""The checker counts what is lost and doubled from the fake's tables, not the engine's word."""

from __future__ import annotations

from typing import Any

import pytest

from callresilience.sim import (
    CallHistory,
    CheckResult,
    History,
    check,
    exit_status,
    percentiles,
    summarize,
)
from callresilience.sim._summary import SUMMARY_KEYS

LOG, INTERACTION, ITEM = "sn_openframe_phone_log", "interaction", "awa_work_item"


def answered(call_id: str, *, missed: tuple[int, ...] = (), outage: bool = False) -> CallHistory:
    """A call answered (after `missed` rang out) and ended."""
    return CallHistory(
        call_id,
        arrived=1.0,
        outage=outage,
        first_offer=1.002,
        offers=1 + len(missed),
        missed=list(missed),
        agent_id="agent-01",
        outcome="ended",
    )


def records_for(call: CallHistory, n: int = 0) -> dict[str, list[dict[str, str]]]:
    """The records a correctly written call leaves on the instance."""
    log = {"sys_id": f"log{n}", "call_id": call.call_id, "end_time": "2026-01-01 00:00:10"}
    interaction = {
        "sys_id": f"int{n}",
        "correlation_id": call.call_id,
        "state": "closed_complete",
        "channel_metadata_document": f"log{n}",
    }
    items = [
        {"sys_id": f"item{n}-{a}", "correlation_id": f"{call.call_id}:missed-{a}"}
        for a in call.missed
    ]
    return {LOG: [log], INTERACTION: [interaction], ITEM: items}


def tables_for(calls: list[CallHistory]) -> dict[str, list[dict[str, str]]]:
    """Every call's records, table by table."""
    tables: dict[str, list[dict[str, str]]] = {LOG: [], INTERACTION: [], ITEM: []}
    for n, call in enumerate(calls):
        for table, records in records_for(call, n).items():
            tables[table] += records
    return tables


def test_complete_records_are_neither_lost_nor_doubled() -> None:
    """Every call has its phone log, Interaction and work items: lost 0, duplicates 0."""
    calls = [answered("c1"), answered("c2", missed=(1,))]
    result = check(calls, tables_for(calls))
    assert result == CheckResult(0, 0, 2, 2, 1, ())


def test_a_planted_duplicate_and_a_missing_record_are_counted() -> None:
    """A second Interaction for c1 is a duplicate; c2's missing phone log makes it lost."""
    calls = [answered("c1"), answered("c2"), answered("c3")]
    tables = tables_for(calls)
    tables[INTERACTION].append(dict(tables[INTERACTION][0], sys_id="again"))
    tables[LOG] = [r for r in tables[LOG] if r["call_id"] != "c2"]
    result = check(calls, tables)
    assert (result.lost, result.duplicates) == (1, 1)
    assert (result.phone_logs, result.interactions) == (2, 4)
    assert result.problems == ("c1: 1 duplicate record(s)", "c2: phone log missing")


def test_duplicate_phone_logs_and_work_items_are_counted() -> None:
    """Two phone logs for one call and the same missed offer twice are two duplicates."""
    calls = [answered("c1", missed=(1,))]
    tables = tables_for(calls)
    tables[LOG].append(dict(tables[LOG][0], sys_id="log-again"))
    tables[ITEM].append(dict(tables[ITEM][0], sys_id="item-again"))
    tables[ITEM].append({"sys_id": "stray", "correlation_id": "c1:missed-9"})
    result = check(calls, tables)
    assert (result.lost, result.duplicates, result.work_items) == (0, 3, 3)


def test_unfinished_calls_and_incomplete_records_are_lost() -> None:
    """Never finished, missing work item, unlinked or unclosed Interaction, open phone log."""
    never = CallHistory("never", 1.0, False, agent_id="a")  # answered, no outcome
    no_item = answered("no-item", missed=(1,))
    unlinked = answered("unlinked")
    unclosed = answered("unclosed")
    open_log = answered("open-log")
    calls = [never, no_item, unlinked, unclosed, open_log]
    tables = tables_for(calls)
    tables[ITEM] = []
    for record in tables[INTERACTION]:
        if record["correlation_id"] == "unlinked":
            record["channel_metadata_document"] = "elsewhere"
        if record["correlation_id"] == "unclosed":
            record["state"] = "work_in_progress"
    for record in tables[LOG]:
        if record["call_id"] == "open-log":
            record["end_time"] = ""
    result = check(calls, tables)
    assert result.lost == 5
    assert result.duplicates == 0
    text = "\n".join(result.problems)
    for words in (
        "never finished",
        "work item no-item:missed-1 missing",
        "not linked",
        "work_in_progress, not closed_complete",
        "phone log not closed",
    ):
        assert words in text


def test_abandoned_and_overflowed_calls_need_what_their_offers_left() -> None:
    """Abandoned after a miss: a closed_abandoned Interaction; no records needed otherwise."""
    missed = CallHistory("m", 1.0, False, offers=1, missed=[1], outcome="abandoned")
    quiet = CallHistory("q", 1.0, False, outcome="overflowed")
    tables = {
        INTERACTION: [{"sys_id": "i", "correlation_id": "m", "state": "closed_abandoned"}],
        ITEM: [{"sys_id": "w", "correlation_id": "m:missed-1"}],
        LOG: [{"sys_id": "l", "call_id": "q"}],  # nobody answered q
    }
    result = check([missed, quiet], tables)
    assert result.lost == 1
    assert result.problems == ("q: phone log for a call nobody answered",)
    assert check([missed], {}).problems == ("m: Interaction missing, work item m:missed-1 missing",)


def test_summary_has_exactly_the_keys_and_counts_from_the_checker() -> None:
    """The summary's keys are fixed; lost and created counts are the checker's."""
    calls = [
        answered("c1"),
        answered("c2", missed=(1,), outage=True),
        CallHistory("c3", 5.0, False, first_offer=5.5, offers=1, rejected=1, outcome="abandoned"),
        CallHistory("c4", 6.0, False, outcome="overflowed"),
    ]
    result = CheckResult(2, 1, 9, 8, 7, ())
    summary = summarize(calls, result, dead_letters=3, drain_seconds=12.345)
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["calls"] == 4
    assert summary["offered"] == 4
    assert summary["answered"] == 2
    assert (summary["rejected_offers"], summary["timed_out_offers"]) == (1, 1)
    assert (summary["abandoned"], summary["overflowed"]) == (1, 1)
    assert (summary["lost"], summary["duplicates"], summary["dead_letters"]) == (2, 1, 3)
    assert summary["interactions_expected"] == 2
    assert (
        summary["phone_logs_created"],
        summary["interactions_created"],
        summary["work_items_created"],
    ) == (9, 8, 7)
    assert summary["offer_latency_ms"]["healthy"] == {"p50": 2.0, "p99": 500.0, "max": 500.0}
    assert summary["offer_latency_ms"]["outage"] == {"p50": 2.0, "p99": 2.0, "max": 2.0}
    assert summary["drain_seconds"] == 12.3
    assert summarize([], result, dead_letters=0, drain_seconds=None)["drain_seconds"] is None


def test_percentiles_use_the_nearest_rank() -> None:
    """p50, p99 and max of 1..100, and None for nothing."""
    assert percentiles([float(v) for v in range(100, 0, -1)]) == {
        "p50": 50.0,
        "p99": 99.0,
        "max": 100.0,
    }
    assert percentiles([]) == {"p50": None, "p99": None, "max": None}


@pytest.mark.parametrize(
    ("lost", "duplicates", "status"), [(0, 0, 0), (1, 0, 1), (0, 2, 1), (3, 3, 1)]
)
def test_exit_status_is_1_when_anything_was_lost_or_doubled(
    lost: int, duplicates: int, status: int
) -> None:
    """Any loss or duplicate makes the command fail."""
    summary: dict[str, Any] = {"lost": lost, "duplicates": duplicates}
    assert exit_status(summary) == status


def test_history_follows_engine_events() -> None:
    """Offers, rejects, misses, connections and endings land on the right call."""
    from callresilience.engine import CallOffered, OfferTimedOut
    from callresilience.routing import (
        CallAbandoned,
        CallConnected,
        CallEnded,
        CallOverflowed,
        CallRedirected,
        OfferOutcome,
        OverflowReason,
    )

    history = History()
    history.arrived("a", 1.0, outage=False)
    history.arrived("b", 2.0, outage=True)
    history.arrived("c", 3.0, outage=False)
    history.channel_called("a", 1.5)
    history.channel_called("a", 9.0)  # a later offer does not move the first
    history.channel_called("zzz", 1.0)  # not a call of this run
    for event in (
        CallOffered("a", "x", 0.0, 1),
        CallRedirected("a", "x", OfferOutcome.REJECTED),
        CallOffered("a", "y", 0.0, 2),
        OfferTimedOut("a", "y", 2),
        CallRedirected("a", "y", OfferOutcome.NO_ANSWER),
        CallOffered("a", "z", 0.0, 3),
        CallConnected("a", "z"),
        CallEnded("a", "z", 10.0, False),
        CallAbandoned("b", 3.0, None),
        CallOverflowed("c", OverflowReason.MAX_WAIT, 90.0),
        CallEnded("unknown", "z", 1.0, False),
    ):
        history.event(event)
    a = history.calls["a"]
    assert (a.offers, a.rejected, a.missed, a.agent_id, a.outcome) == (3, 1, [2], "z", "ended")
    assert a.offer_latency == pytest.approx(0.5)
    assert (history.offers, history.redirects, history.answered, history.active) == (3, 2, 1, 0)
    assert (history.count("abandoned"), history.count("overflowed")) == (1, 1)
    assert history.calls["b"].offer_latency is None
