"""The checker can fail: hand-made histories, each with one broken guarantee, are reported."""

from __future__ import annotations

from typing import Any

import attrs

from callresilience.engine import CallOffered, RecordMapping
from callresilience.health import Mode, ModeChanged
from callresilience.journal import RecordDead
from callresilience.routing import CallConnected, CallEnded, CallRedirected, OfferOutcome
from callresilience.testing import RecordedRequest

from ._checker import (
    CallPlan,
    Expectations,
    FaultWindow,
    RunHistory,
    Sent,
    Step,
    Transition,
    check_history,
)

ADA, BEN = "a" * 32, "b" * 32
SCOPES = ("region:emea", "region:amer")


def expectations() -> Expectations:
    """Switch within 25 s of the first request, back within 40 s of the end."""
    return Expectations(
        switch_within=25.0,
        return_within=40.0,
        spurious_slack=9.0,
        agents={"ada": ADA, "ben": BEN},
        scopes=SCOPES,
        mapping=RecordMapping(),
    )


def answered(history: RunHistory, call_id: str, agent: str, at: float, n: int) -> None:
    """A call offered at arrival, accepted 2 s later and ended at +10 s, with its records."""
    history.calls[call_id] = CallPlan(call_id, at, free_at_arrival=True)
    history.events += [
        (at, CallOffered(call_id, agent, at + 20, 1)),
        (at + 2, CallConnected(call_id, agent)),
        (at + 10, CallEnded(call_id, agent, 8.0, by_caller=False)),
    ]
    for key in (f"{call_id}:phone_log", f"{call_id}:interaction", f"{call_id}:closed"):
        history.journal += [
            Transition(at + 2, "append", call_id, key, "pending"),
            Transition(at + 3, "complete", call_id, key, "done"),
        ]
    log, interaction = f"{n:031d}1", f"{n:031d}2"
    user = history.expect.agents[agent]
    history.tables.setdefault("sn_openframe_phone_log", []).append(
        {"sys_id": log, "call_id": call_id, "agent": user, "end_time": "2026-01-01 00:00:10"}
    )
    history.tables.setdefault("interaction", []).append(
        {
            "sys_id": interaction,
            "correlation_id": call_id,
            "state": "closed_complete",
            "assigned_to": user,
            "channel_metadata_table": "sn_openframe_phone_log",
            "channel_metadata_document": log,
        }
    )
    history.tables.setdefault("awa_work_item", [])


def healthy() -> RunHistory:
    """Two calls, both taken and closed, with every record right."""
    history = RunHistory(seed=0, reproduce="", expect=expectations(), end=200.0)
    answered(history, "c1", "ada", 10.0, 1)
    answered(history, "c2", "ben", 12.0, 2)
    return history


def outage(history: RunHistory, switch_at: float, back_at: float | None) -> RunHistory:
    """A 40 s outage from 50 s; the first request met it at 51 s."""
    history.faults.append(FaultWindow("refused", 50.0, 90.0, outage=True))
    history.sent.append(Sent(51.0, "POST", "interaction", None, "c9", {}, "ConnectError"))
    for scope in SCOPES:
        history.events.append(
            (switch_at, ModeChanged(scope, Mode.NORMAL, Mode.RESILIENCY, switch_at, "down"))
        )
        if back_at is not None:
            history.events.append(
                (back_at, ModeChanged(scope, Mode.RESILIENCY, Mode.NORMAL, back_at, "healthy"))
            )
    return history


def rules(history: RunHistory) -> set[str]:
    """The rules the checker says were broken."""
    return check_history(history).rules()


def test_a_correct_history_passes() -> None:
    """Nothing wrong, nothing reported: the hand-made histories below differ in one thing."""
    report = check_history(healthy())
    assert report.ok, report.text()
    assert check_history(outage(healthy(), 60.0, 120.0)).ok


def test_a_lost_call_is_reported() -> None:
    """A call that never ended, and whose records never came, is lost."""
    history = healthy()
    history.events = [
        e for e in history.events if not isinstance(e[1], CallEnded) or e[1].call_id != "c2"
    ]
    history.tables["interaction"] = [
        r for r in history.tables["interaction"] if r["correlation_id"] != "c2"
    ]
    assert "lost" in rules(history)


def test_a_pending_journal_entry_is_a_lost_call() -> None:
    """An entry left pending at the end counts as lost."""
    history = healthy()
    history.journal.append(Transition(150.0, "retry", "c1", "c1:closed", "pending", "503"))
    assert rules(history) == {"lost"}


def test_a_duplicate_record_is_reported() -> None:
    """A second Interaction for one call is a duplicate."""
    history = healthy()
    history.tables["interaction"].append(dict(history.tables["interaction"][0], sys_id="f" * 32))
    assert "duplicate" in rules(history)


def test_a_wrong_link_is_reported() -> None:
    """An Interaction pointing at another call's phone log has a wrong link."""
    history = healthy()
    first, second = history.tables["interaction"]
    first["channel_metadata_document"] = second["channel_metadata_document"]
    assert "lost" in rules(history)  # the simulator's check calls it unlinked
    history = healthy()
    history.tables["interaction"][0]["assigned_to"] = BEN
    assert rules(history) == {"link"}


def test_a_wrong_final_state_is_reported() -> None:
    """An Interaction left on hold after the call ended is in the wrong state."""
    history = healthy()
    history.tables["interaction"][0]["state"] = "on_hold"
    assert "state" in rules(history)


def test_an_agent_with_two_offers_is_reported() -> None:
    """Offering ben a call while he still rings for another is an overlap."""
    history = healthy()
    history.calls["c3"] = CallPlan("c3", 11.0)
    history.events.insert(1, (11.0, CallOffered("c3", "ada", 31.0, 1)))
    history.events.append((12.0, CallRedirected("c3", "ada", OfferOutcome.REJECTED)))
    assert "agent_overlap" in rules(history)


def test_a_blocked_offer_is_reported() -> None:
    """A call that found a free agent but was offered 3 s later was blocked."""
    history = healthy()
    at, offered = history.events[0]
    history.events[0] = (at + 3.0, attrs.evolve(offered))
    assert rules(history) == {"offer_blocked"}


def test_a_late_mode_switch_is_reported() -> None:
    """Switching 40 s after the first failed request is later than the 25 s allowed."""
    assert rules(outage(healthy(), 91.0, 140.0)) == {"mode_late"}


def test_a_missing_return_to_normal_is_reported() -> None:
    """Still in resiliency mode 40 s after the outage ended is a missing return."""
    assert rules(outage(healthy(), 60.0, None)) == {"mode_no_return"}


def test_a_switch_without_a_fault_is_reported() -> None:
    """A switch to resiliency mode with no fault anywhere near is spurious."""
    history = outage(healthy(), 60.0, 120.0)
    history.events.append(
        (170.0, ModeChanged("region:emea", Mode.NORMAL, Mode.RESILIENCY, 170.0, "down"))
    )
    assert rules(history) == {"mode_spurious"}


def test_a_dead_entry_not_injected_is_reported() -> None:
    """A dead entry with no permanent error behind it is reported; an injected one is not."""
    history = healthy()
    history.journal.append(Transition(20.0, "kill", "c1", "c1:closed", "dead", "400"))
    history.events.append((20.0, RecordDead("c1", "c1:closed", "400")))
    assert rules(history) == {"dead"}
    history.sent.append(
        Sent(20.0, "PATCH", "interaction", "x" * 32, "c1", {}, "400", injected="permanent")
    )
    assert check_history(history).ok


def test_an_injected_error_without_a_dead_entry_is_reported() -> None:
    """A permanent error the client saw must leave a dead entry."""
    history = healthy()
    history.sent.append(
        Sent(20.0, "PATCH", "interaction", "x" * 32, "c2", {}, "400", injected="permanent")
    )
    assert rules(history) == {"dead"}


def test_a_request_referring_to_a_missing_record_is_out_of_order() -> None:
    """An Interaction sent with a link to a phone log that did not exist yet is out of order."""
    history = healthy()
    history.sent.append(
        Sent(12.0, "POST", "interaction", None, "c1", {}, "201", dangling=("log/1",))
    )
    assert rules(history) == {"order"}


def test_states_sent_out_of_order_are_reported() -> None:
    """Closing the Interaction, then sending it back to work in progress, is out of order."""
    history = healthy()
    for at, state in ((13.0, "closed_complete"), (14.0, "work_in_progress")):
        history.sent.append(
            Sent(at, "PATCH", "interaction", "2" * 32, "c1", {"state": state}, "200")
        )
    history.steps.append(Step(11.0, "accept", "c1", "ada"))
    assert rules(history) == {"order"}


def test_a_late_commit_that_undoes_a_newer_write_is_reported() -> None:
    """A timed-out PATCH committed after a newer one, setting the state back, is a late write."""
    history = healthy()
    sys_id = history.tables["interaction"][0]["sys_id"]

    @attrs.frozen
    class Received:
        method: str
        table: str
        sys_id: str
        at: float
        committed: bool
        outcome: str

    history.sent += [
        Sent(13.0, "PATCH", "interaction", sys_id, "c1", {"state": "on_hold"}, "ReadTimeout"),
        Sent(17.0, "PATCH", "interaction", sys_id, "c1", {"state": "closed_complete"}, "200"),
    ]
    received: list[Any] = [
        Received("PATCH", "interaction", sys_id, 17.0, True, "answered"),
        Received("PATCH", "interaction", sys_id, 13.0, True, "timed_out"),
    ]
    history.received = tuple(received)
    assert rules(history) == {"late_write"}


# -- Batch API requests: the batch itself and the table requests it carried ---------------------


def batch(at: float, *subs: Sent, outcome: str = "200") -> list[Sent]:
    """A Batch API request as the harness writes it down: the batch, then its sub-requests."""
    outer = Sent(at, "POST", None, None, None, {}, outcome, batch="b1", kind="batch")
    return [outer, *(attrs.evolve(s, at=at, batch="b1", kind="sub") for s in subs)]


def received(method: str, path: str, table: str | None, at: float, **kw: Any) -> RecordedRequest:
    """A request as the fake logs it."""
    fields: dict[str, Any] = {"query": "", "sys_id": None, "status": 200}
    fields.update(outcome="answered", committed=False, at=at)
    fields.update(kw)
    return RecordedRequest(method, path, table=table, **fields)


def test_a_permanent_error_inside_a_batch_must_leave_a_dead_entry() -> None:
    """A sub-request answered 400 is a permanent error of its call, as if sent alone."""
    history = healthy()
    poisoned = Sent(20.0, "PATCH", "interaction", "x" * 32, "c2", {}, "400", injected="permanent")
    history.sent += batch(20.0, poisoned)
    assert rules(history) == {"dead"}
    # Its batch failed as a whole (a 503): the sub-request never ran, so nothing must die.
    history = healthy()
    history.sent += batch(20.0, attrs.evolve(poisoned, outcome="batch 503"), outcome="503")
    assert check_history(history).ok


def test_an_outage_first_met_by_a_batch_counts_from_the_batch() -> None:
    """The switch is due 25 s after the batch that met the outage, not after a later request."""
    history = outage(healthy(), 90.0, 120.0)
    history.sent.clear()
    history.sent += batch(51.0, Sent(0.0, "POST", "interaction", None, "c9", {}, "", None))
    history.sent.append(Sent(80.0, "POST", "interaction", None, "c9", {}, "ConnectError"))
    assert rules(history) == {"mode_late"}  # due by 76 s


def test_a_late_commit_inside_a_batch_is_reported() -> None:
    """A batched PATCH that timed out and landed after a newer one is a late write."""
    history = healthy()
    sys_id = history.tables["interaction"][0]["sys_id"]
    path = f"/api/now/table/interaction/{sys_id}"
    hold = Sent(
        0.0, "PATCH", "interaction", sys_id, "c1", {"state": "on_hold"}, "batch ReadTimeout"
    )
    history.sent += batch(13.0, hold, outcome="ReadTimeout")
    history.sent.append(
        Sent(17.0, "PATCH", "interaction", sys_id, "c1", {"state": "closed_complete"}, "200")
    )
    history.received = (
        received("PATCH", path, "interaction", 17.0, sys_id=sys_id, committed=True),
        received(
            "PATCH",
            path,
            "interaction",
            13.0,
            sys_id=sys_id,
            committed=True,
            status=None,
            outcome="timed_out",
            batch_id="b1",
        ),
        received(
            "POST",
            "/api/now/v1/batch",
            None,
            13.0,
            committed=True,
            status=None,
            outcome="timed_out",
        ),
    )
    assert rules(history) == {"late_write"}


def test_a_batch_counts_once_over_the_wire_and_its_sub_requests_as_table_requests() -> None:
    """The figures: requests over the wire, Table API requests run, and batches."""
    history = healthy()
    history.received = (
        received("POST", "/api/now/table/interaction", "interaction", 5.0, status=201),
        received("POST", "/api/now/table/interaction", "interaction", 9.0, batch_id="b1"),
        received("PATCH", "/api/now/table/interaction/1", "interaction", 9.0, batch_id="b1"),
        received("POST", "/api/now/v1/batch", None, 9.0, committed=True),
        received("POST", "/oauth_token.do", None, 1.0),
    )
    stats = check_history(history).stats
    assert (stats["requests"], stats["table_requests"], stats["batches"]) == (3, 3, 1)
