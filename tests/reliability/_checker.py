"""A run's history, and the checker that proves (or refutes) the engine's guarantees from it.

The history is plain data: what the harness told the engine (steps), what the engine told the
agents (channel calls) and everyone else (events), every journal transition, every request the
client sent and the fake received, and the records the fake holds at the end. `check` reads
nothing else: no engine counter, no journal query. Each broken guarantee is one `Violation`,
named by its rule:

- ``lost``: a call never reached a terminal state, an entry of it never finished, or a record
  it must have is missing;
- ``duplicate``: a record beyond the one a call may have, or a record of no call at all;
- ``link``: a record points at the wrong record or the wrong agent;
- ``state``: a record's final state is not the call's;
- ``order``: a request referred to a record that did not exist yet, or a call's Interaction
  states were sent out of order;
- ``offer_blocked``: a call that had a free agent at arrival was not offered at once;
- ``mode_late``, ``mode_no_return``, ``mode_spurious``: the switch to resiliency mode came
  late (or never), the return to normal did not come, or a switch came with no fault;
- ``agent_overlap``: an agent held two offers or calls at once;
- ``dead``: a dead entry not caused by an injected permanent error, or an injected permanent
  error that did not leave a dead entry;
- ``late_write``: a write the client gave up on (timed out) was committed by the instance
  after a write to the same record sent later, so an older value overwrote a newer one. The
  call's wrong final state is then reported under this rule alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from callresilience.engine import CallOffered, OfferTimedOut, RecordMapping
from callresilience.health import Mode, ModeChanged
from callresilience.journal import RecordDead
from callresilience.routing import (
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
)
from callresilience.sim import History, check

RULES = (
    "lost",
    "duplicate",
    "link",
    "state",
    "order",
    "offer_blocked",
    "mode_late",
    "mode_no_return",
    "mode_spurious",
    "agent_overlap",
    "dead",
    "late_write",
)

#: The Interaction states a call goes through, in the order they may follow each other.
NEW, WORKING, ON_HOLD = "new", "work_in_progress", "on_hold"
CLOSED, ABANDONED = "closed_complete", "closed_abandoned"


@attrs.frozen
class Step:
    """Something the harness told the engine (an adapter event), and whether it was taken."""

    at: float
    action: str  # arrive, accept, reject, hold, resume, end, hangup
    call_id: str
    agent_id: str | None = None
    ok: bool = True
    seq: int = 0  # how many events the history held when the step was done


@attrs.frozen
class ChannelCall:
    """The engine called the adapter's channel."""

    at: float
    method: str  # offer, withdraw, notify
    agent_id: str
    call_id: str | None = None
    attempt: int | None = None


@attrs.frozen
class Transition:
    """A journal entry changed state (``op``: append, fold, claim, complete, retry, kill)."""

    at: float
    op: str
    call_id: str
    key: str
    state: str
    detail: str = ""


@attrs.frozen
class Sent:
    """A request the engine's client sent, as the harness's transport saw it.

    Attributes:
        at: When it was sent.
        method: GET, POST, PATCH...
        table: The table in the URL as the engine wrote it.
        sys_id: The record in the URL, if any.
        call_id: The call it belongs to, when the harness could tell.
        fields: The JSON body of a write.
        outcome: The status answered, or the transport error's name.
        injected: ``"permanent"`` when the harness turned it into a 400.
        dangling: sys_ids it referred to (URL or body) that did not exist when it was sent.
        batch: The Batch API request's id, on it and on each of its sub-requests.
        kind: ``"request"`` for a request sent on its own; ``"batch"`` for a Batch API
            request (a POST with no table, that writes nothing itself), followed in the
            history by one ``"sub"`` per request it carried: each a Table API request of its
            table, sent when its batch was, its outcome the status its item of the answer
            carries (``"batch <outcome>"`` when the batch failed as a whole).
    """

    at: float
    method: str
    table: str | None
    sys_id: str | None
    call_id: str | None
    fields: Mapping[str, Any] = attrs.field(factory=dict)
    outcome: str = ""
    injected: str | None = None
    dangling: tuple[str, ...] = ()
    batch: str | None = None
    kind: Literal["request", "batch", "sub"] = "request"


@attrs.frozen
class FaultWindow:
    """A fault the run injected: `outage` ones must switch the modes, `permanent` ones kill."""

    name: str
    start: float
    end: float
    outage: bool = False
    permanent: bool = False
    noise: bool = False  # a low-probability fault over the whole run, not an incident


@attrs.frozen
class Expectations:
    """What the configuration promises.

    Attributes:
        switch_within: Seconds from the first request an outage fault met to the switch.
        return_within: Seconds from the end of an outage to the return to normal mode.
        spurious_slack: How long after a fault's end a switch may still be its doing.
        agents: Agent id to the `sys_user` sys_id written as `agent` and `assigned_to`.
        scopes: Every scope; an outage of the instance switches them all.
        mapping: The tables and fields.
    """

    switch_within: float
    return_within: float
    spurious_slack: float
    agents: Mapping[str, str]
    scopes: tuple[str, ...]
    mapping: RecordMapping = attrs.field(factory=RecordMapping)


@attrs.frozen
class CallPlan:
    """A call as the harness planned it: when it arrived, and whether an agent was free."""

    call_id: str
    arrive: float
    free_at_arrival: bool = False


@attrs.define
class RunHistory:
    """Everything one run recorded; see the module docstring."""

    seed: int
    reproduce: str
    expect: Expectations
    calls: dict[str, CallPlan] = attrs.Factory(dict)
    steps: list[Step] = attrs.Factory(list)
    events: list[tuple[float, Any]] = attrs.Factory(list)
    channel: list[ChannelCall] = attrs.Factory(list)
    journal: list[Transition] = attrs.Factory(list)
    sent: list[Sent] = attrs.Factory(list)
    received: tuple[Any, ...] = ()  # the fake's RecordedRequest log
    tables: dict[str, list[dict[str, str]]] = attrs.Factory(dict)
    faults: list[FaultWindow] = attrs.Factory(list)
    end: float = 0.0
    spins: list[tuple[float, list[str]]] = attrs.Factory(list)  # see the harness's Livelock


@attrs.frozen
class Violation:
    """One broken guarantee."""

    rule: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.subject}: {self.detail}"


@attrs.frozen
class Report:
    """What the checker found, and a few figures about the run."""

    violations: tuple[Violation, ...]
    stats: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        """Whether every guarantee held."""
        return not self.violations

    def rules(self) -> set[str]:
        """The rules that were broken."""
        return {v.rule for v in self.violations}

    def text(self, limit: int = 20) -> str:
        """The first `limit` violations, one a line."""
        lines = [str(v) for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"... and {len(self.violations) - limit} more")
        return "\n".join(lines)


# -- the checker ---------------------------------------------------------------------------------


def check_history(history: RunHistory) -> Report:
    """Check every guarantee against `history`; see the module docstring for the rules."""
    found: list[Violation] = []
    calls = _call_histories(history)
    poisoned = _poisoned(history)
    found += _terminal(history, calls)
    found += _journal_finished(history, poisoned)
    found += _records(history, calls, poisoned)
    found += _order(history, calls)
    found += _offers(history, calls)
    found += _modes(history)
    found += _agents(history)
    found += _dead(history, poisoned)
    late = _late_writes(history)
    overwritten = {v.subject for v in late}
    found = [
        v
        for v in found
        if not (v.subject in overwritten and (v.rule == "state" or "Interaction" in v.detail))
    ]
    found += late
    stats = {
        "calls": len(history.calls),
        "answered": sum(1 for c in calls.values() if c.answered),
        "missed_offers": sum(len(c.missed) for c in calls.values()),
        "abandoned": sum(1 for c in calls.values() if c.outcome in ("abandoned", "overflowed")),
        # Requests over the wire (a Batch API request counts once), Table API requests run
        # (a batch's sub-requests one each) and Batch API requests.
        "requests": sum(1 for r in history.received if _wire(r)),
        "table_requests": sum(1 for r in history.received if r.table is not None),
        "batches": sum(1 for r in history.received if _wire(r) and _batch_request(r)),
        "poisoned_calls": len(poisoned),
        "dead_entries": len(_dead_keys(history)),
        "switches": sum(
            1 for _, e in history.events if isinstance(e, ModeChanged) and e.new is Mode.RESILIENCY
        ),
    }
    return Report(tuple(found), stats)


def _wire(request: Any) -> bool:
    """Whether a received request came over the wire (not a sub-request of a batch)."""
    return getattr(request, "batch_id", None) is None


def _batch_request(request: Any) -> bool:
    """Whether a received request is a Batch API request (the POST that carries the rest)."""
    path = str(getattr(request, "path", ""))
    return request.table is None and path.rstrip("/").endswith("/batch")


def _call_histories(history: RunHistory) -> dict[str, Any]:
    """The simulator's per-call account (answered, missed attempts, outcome) from the events."""
    sim = History()
    for plan in history.calls.values():
        sim.arrived(plan.call_id, plan.arrive, outage=False)
    for at, event in history.events:
        if isinstance(event, CallOffered):
            sim.channel_called(event.call_id, at)
        sim.event(event)
    return sim.calls


def _poisoned(history: RunHistory) -> set[str]:
    """Calls the harness gave a permanent error the client saw (a 400 that was delivered)."""
    return {
        s.call_id
        for s in history.sent
        if s.injected == "permanent" and s.outcome == "400" and s.call_id
    }


def _terminal(history: RunHistory, calls: Mapping[str, Any]) -> list[Violation]:
    return [
        Violation("lost", call_id, "never reached a terminal state (ended, abandoned, overflowed)")
        for call_id, call in calls.items()
        if call.outcome is None
    ]


def _final_states(history: RunHistory) -> dict[str, Transition]:
    last: dict[str, Transition] = {}
    for transition in history.journal:
        last[transition.key] = transition
    return last


def _dead_keys(history: RunHistory) -> dict[str, Transition]:
    return {k: t for k, t in _final_states(history).items() if t.state == "dead"}


def _journal_finished(history: RunHistory, poisoned: set[str]) -> list[Violation]:
    """Every entry is done, except a dead one and those behind it, of a poisoned call."""
    found = []
    for key, last in sorted(_final_states(history).items()):
        if last.state in {"done", "dead"}:
            continue
        if last.call_id in poisoned:
            continue  # waits behind its call's dead entry, as the journal's order requires
        found.append(Violation("lost", key, f"journal entry left {last.state} at the end"))
    return found


def _by_call(
    records: Iterable[Mapping[str, str]], field: str
) -> dict[str, list[Mapping[str, str]]]:
    grouped: defaultdict[str, list[Mapping[str, str]]] = defaultdict(list)
    for record in records:
        key = str(record.get(field, ""))
        grouped[key.split(":missed-", 1)[0]].append(record)
    return grouped


def _records(history: RunHistory, calls: Mapping[str, Any], poisoned: set[str]) -> list[Violation]:
    """Every expected record exactly once, with the right links and states."""
    m = history.expect.mapping
    agents = history.expect.agents
    logs = _by_call(history.tables.get(m.phone_log_table, ()), "call_id")
    interactions = _by_call(history.tables.get(m.interaction_table, ()), m.interaction_correlation)
    items = _by_call(history.tables.get(m.work_item_table, ()), m.work_item_correlation)
    found: list[Violation] = []
    for table, grouped in (
        (m.phone_log_table, logs),
        (m.interaction_table, interactions),
        (m.work_item_table, items),
    ):
        for call_id in sorted(set(grouped) - set(calls)):
            found.append(Violation("duplicate", call_id or "?", f"{table} record of no call"))
    # The simulator's checker, on the calls it can judge (a poisoned call lacks records).
    healthy = [c for cid, c in calls.items() if cid not in poisoned and c.outcome is not None]
    result = check(healthy, history.tables, m)
    for problem in result.problems:
        call_id, _, what = problem.partition(": ")
        rule = "duplicate" if "duplicate" in what and "missing" not in what else "lost"
        found.append(Violation(rule, call_id, f"simulator check: {what}"))
    for call_id, call in sorted(calls.items()):
        log = logs.get(call_id, [])
        interaction = interactions.get(call_id, [])
        work = items.get(call_id, [])
        if len(log) > 1 or len(interaction) > 1:
            if call_id in poisoned:  # the simulator's check left it out
                found.append(Violation("duplicate", call_id, "a record exists twice"))
            continue  # counted above otherwise
        if call_id in poisoned:
            continue  # its records stop at the dead entry; only duplicates count
        if call.agent_id is not None and log:
            want = agents.get(call.agent_id)
            if want and log[0].get("agent") != want:
                found.append(Violation("link", call_id, f"phone log agent {log[0].get('agent')!r}"))
        if not call.needs_interaction and interaction:
            found.append(Violation("duplicate", call_id, "an Interaction nobody needed"))
        if not interaction:
            continue
        record = interaction[0]
        if call.agent_id is not None:
            want = agents.get(call.agent_id)
            if want and record.get("assigned_to") != want:
                found.append(
                    Violation(
                        "link", call_id, f"Interaction assigned to {record.get('assigned_to')!r}"
                    )
                )
            if log and record.get("channel_metadata_table") != m.phone_log_table:
                found.append(Violation("link", call_id, "Interaction's document table is wrong"))
        for item in work:
            if item.get("document_id") != record.get("sys_id"):
                found.append(
                    Violation("link", call_id, "work item does not point at the Interaction")
                )
        want_state = {"ended": CLOSED, "abandoned": ABANDONED, "overflowed": ABANDONED}.get(
            call.outcome or ""
        )
        if want_state is not None and record.get("state") != want_state:
            found.append(
                Violation(
                    "state", call_id, f"Interaction {record.get('state')!r}, not {want_state}"
                )
            )
    return found


def _true_states(history: RunHistory) -> dict[str, list[str]]:
    """Each call's Interaction states in the order its events and steps gave them."""
    timeline: list[tuple[float, str, str]] = []
    for n, (_, event) in enumerate(history.events):
        call_id = getattr(event, "call_id", None)
        if call_id is None:
            continue
        if isinstance(event, OfferTimedOut):
            timeline.append((n, call_id, NEW))
        elif isinstance(event, CallConnected):
            timeline.append((n, call_id, WORKING))
        elif isinstance(event, CallEnded):
            timeline.append((n, call_id, CLOSED))
        elif isinstance(event, CallAbandoned | CallOverflowed):
            timeline.append((n, call_id, ABANDONED))
    for step in history.steps:
        if step.ok and step.action in ("hold", "resume"):
            # A hold publishes no event: it came after the events recorded before it.
            state = ON_HOLD if step.action == "hold" else WORKING
            timeline.append((step.seq - 0.5, step.call_id, state))
    states: defaultdict[str, list[str]] = defaultdict(list)
    for _, call_id, state in sorted(timeline):
        if not states[call_id] or states[call_id][-1] != state:
            states[call_id].append(state)
    return states


def _subsequence(sent: Sequence[str], true: Sequence[str]) -> bool:
    walk = iter(true)
    return all(any(state == t for t in walk) for state in sent)


def _order(history: RunHistory, calls: Mapping[str, Any]) -> list[Violation]:
    """No request refers to a record that does not exist yet; states go out in order."""
    m = history.expect.mapping
    found: list[Violation] = []
    sent_states: defaultdict[str, list[str]] = defaultdict(list)
    for request in history.sent:
        if request.dangling:
            found.append(
                Violation(
                    "order",
                    request.call_id or "?",
                    f"{request.method} {request.table} at {request.at:g} referred to "
                    f"{', '.join(request.dangling)} before it existed",
                )
            )
        state = request.fields.get("state") if request.table == m.interaction_table else None
        if request.call_id and isinstance(state, str) and request.method in ("POST", "PATCH"):
            seq = sent_states[request.call_id]
            if not seq or seq[-1] != state:
                seq.append(state)
    true = _true_states(history)
    for call_id, seq in sorted(sent_states.items()):
        if call_id in calls and not _subsequence(seq, true.get(call_id, [])):
            found.append(
                Violation(
                    "order",
                    call_id,
                    f"Interaction states sent {seq}, but the call went {true.get(call_id, [])}",
                )
            )
    return found


def _offers(history: RunHistory, calls: Mapping[str, Any]) -> list[Violation]:
    """A call that found a free agent is offered at the instant it arrived."""
    found = []
    for call_id, plan in sorted(history.calls.items()):
        if not plan.free_at_arrival:
            continue
        call = calls.get(call_id)
        first = None if call is None else call.first_offer
        if first is None or first > plan.arrive:
            waited = "never" if first is None else f"after {first - plan.arrive:g} s"
            found.append(
                Violation(
                    "offer_blocked", call_id, f"an agent was free at arrival but offered {waited}"
                )
            )
    return found


def _resiliency_intervals(history: RunHistory) -> dict[str, list[tuple[float, float]]]:
    """Per scope, the times it spent in resiliency mode (open-ended ones end at +inf)."""
    intervals: dict[str, list[tuple[float, float]]] = {s: [] for s in history.expect.scopes}
    since: dict[str, float] = {}
    for _, event in history.events:
        if not isinstance(event, ModeChanged):
            continue
        intervals.setdefault(event.scope, [])
        if event.new is Mode.RESILIENCY:
            since.setdefault(event.scope, event.at)
        elif event.scope in since:
            intervals[event.scope].append((since.pop(event.scope), event.at))
    for scope, start in since.items():
        intervals[scope].append((start, math.inf))
    return intervals


def _modes(history: RunHistory) -> list[Violation]:
    """Switch within the bound after an outage starts; back within the bound after it ends."""
    expect = history.expect
    found: list[Violation] = []
    intervals = _resiliency_intervals(history)
    outages = sorted((f for f in history.faults if f.outage), key=lambda f: f.start)
    for fault in outages:
        # A table request: one sent alone or carried by a batch (the batch itself and token
        # requests have no table).
        first = next(
            (s.at for s in history.sent if fault.start <= s.at < fault.end and s.table), None
        )
        if first is None:
            continue  # nothing asked the instance anything: there was nothing to notice
        deadline = first + expect.switch_within
        for scope in expect.scopes:
            if not any(a <= deadline and b > fault.start for a, b in intervals.get(scope, [])):
                found.append(
                    Violation(
                        "mode_late",
                        scope,
                        f"{fault.name} from {fault.start:g} s (first request at {first:g} s): "
                        f"not in resiliency mode by {deadline:g} s",
                    )
                )
    # Back to normal: after the last fault of each quiet stretch, within the bound.
    windows = sorted((f for f in history.faults if not f.noise), key=lambda f: f.start)
    for n, fault in enumerate(windows):
        quiet_until = windows[n + 1].start if n + 1 < len(windows) else history.end
        if any(w.end > fault.end for w in windows[:n]):
            continue  # an earlier, longer fault is still on
        back_by = fault.end + expect.return_within
        if back_by > quiet_until:
            continue  # the next fault starts before the return is due
        for scope in expect.scopes:
            for a, b in intervals.get(scope, []):
                # In resiliency from before the fault ended until after the return was due.
                # (A switch after the end is a new episode: new failures, judged above.)
                if a <= fault.end and b > back_by:
                    found.append(
                        Violation(
                            "mode_no_return",
                            scope,
                            f"{fault.name} ended at {fault.end:g} s; still in resiliency "
                            f"mode at {back_by:g} s",
                        )
                    )
    for scope, spans in sorted(intervals.items()):
        for a, _ in spans:
            if not any(f.start <= a <= f.end + expect.spurious_slack for f in history.faults):
                found.append(
                    Violation(
                        "mode_spurious", scope, f"switched to resiliency at {a:g} s, no fault"
                    )
                )
    return found


def _agents(history: RunHistory) -> list[Violation]:
    """An agent holds at most one offer or call at a time."""
    holding: defaultdict[str, set[str]] = defaultdict(set)
    who: defaultdict[str, set[str]] = defaultdict(set)  # call -> agents holding it
    found: list[Violation] = []

    def release(call_id: str, agent_id: str | None = None) -> None:
        for agent in list(who[call_id]) if agent_id is None else [agent_id]:
            holding[agent].discard(call_id)
            who[call_id].discard(agent)

    for at, event in history.events:
        if isinstance(event, CallOffered):
            held = holding[event.agent_id] - {event.call_id}
            if held:
                found.append(
                    Violation(
                        "agent_overlap",
                        event.agent_id,
                        f"offered {event.call_id} at {at:g} s while holding {sorted(held)}",
                    )
                )
            holding[event.agent_id].add(event.call_id)
            who[event.call_id].add(event.agent_id)
        elif isinstance(event, CallRedirected):
            release(event.call_id, event.agent_id)
        elif isinstance(event, CallConnected):
            others = who[event.call_id] - {event.agent_id}
            if others:
                found.append(
                    Violation(
                        "agent_overlap",
                        event.call_id,
                        f"connected to {event.agent_id} while offered to {sorted(others)}",
                    )
                )
        elif isinstance(event, CallEnded | CallAbandoned | CallOverflowed):
            release(event.call_id)
    return found


def _late_writes(history: RunHistory) -> list[Violation]:
    """Committed writes that landed after a later-sent write to the same record, and undid it.

    A timed-out write sent again lands twice with the same fields, which is harmless; one that
    lands after a newer write and sets a field to another value overwrote the newer value.
    """
    m = history.expect.mapping
    owner: dict[str, str] = {}
    for table, field in (
        (m.phone_log_table, "call_id"),
        (m.interaction_table, m.interaction_correlation),
        (m.work_item_table, m.work_item_correlation),
    ):
        for record in history.tables.get(table, ()):
            owner[record["sys_id"]] = str(record.get(field, "")).split(":missed-", 1)[0]
    bodies = {(s.method, s.sys_id, s.at): s.fields for s in history.sent if s.sys_id}
    newest: dict[str, tuple[float, Mapping[str, Any]]] = {}
    found = []
    for request in history.received:
        if not request.committed or request.method not in ("PATCH", "PUT"):
            continue
        key = request.sys_id or ""
        fields = bodies.get((request.method, request.sys_id, request.at), {})
        last = newest.get(key)
        if last is None or request.at >= last[0]:
            newest[key] = (request.at, fields)
            continue
        undone = sorted(f for f, v in fields.items() if last[1].get(f, v) != v)
        if undone:
            found.append(
                Violation(
                    "late_write",
                    owner.get(key, key),
                    f"{request.method} {request.table} sent at {request.at:g} s "
                    f"({request.outcome}) was committed after one sent at {last[0]:g} s and "
                    f"set {', '.join(f'{f}={fields[f]!r}' for f in undone)} back",
                )
            )
    return found


def _dead(history: RunHistory, poisoned: set[str]) -> list[Violation]:
    """Dead entries are exactly those of the injected permanent errors."""
    found: list[Violation] = []
    dead = _dead_keys(history)
    announced = {e.key for _, e in history.events if isinstance(e, RecordDead)}
    dead_calls = {t.call_id for t in dead.values()}
    for key, transition in sorted(dead.items()):
        if transition.call_id not in poisoned:
            found.append(
                Violation("dead", key, f"dead without a permanent error: {transition.detail}")
            )
    for key in sorted(announced - set(dead)):
        found.append(Violation("dead", key, "announced dead, but the journal does not say so"))
    for call_id in sorted(poisoned - dead_calls):
        found.append(Violation("dead", call_id, "a permanent error left no dead entry"))
    return found
