"""Every call transition and offer outcome, one row each: the decisions and the states after."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from callresilience import Agent, CallStateError, UnknownAgent, UnknownCall
from callresilience.routing import (
    AgentActivity,
    AgentNotReady,
    AgentPaused,
    AgentStatus,
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    CallState,
    Decision,
    OfferCall,
    OfferOutcome,
    OverflowReason,
    Router,
    WithdrawOffer,
)

from .conftest import ALICE, BOB, CONFIG, call

Step = Callable[[Router], list[Decision]]


@attrs.frozen
class Row:
    """One transition: steps to set up, the step under test, and what must follow."""

    name: str
    setup: tuple[Step, ...]
    step: Step
    decisions: list[Decision]
    call_state: CallState | None  # None: the call finished (see `finished`)
    finished: CallState | None = None
    alice: tuple[AgentStatus, AgentActivity] | None = None


def staffed() -> Router:
    r = Router(CONFIG)
    r.login(ALICE, 0.0, ready=True)
    r.login(BOB, 0.0)
    return r


def arrive(queue: str = "sales", at: float = 1.0) -> Step:
    return lambda r: r.arrive(call("c1", queue, at), at)


ROWS = [
    Row(
        "arrive with nobody ready: queued",
        (lambda r: r.not_ready("alice", 0.0),),
        arrive(),
        [],
        CallState.QUEUED,
        alice=(AgentStatus.NOT_READY, AgentActivity.IDLE),
    ),
    Row(
        "arrive with an agent ready: offered until now + offer_timeout",
        (),
        arrive(),
        [OfferCall("c1", "alice", 21.0, 1)],
        CallState.OFFERED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.RESERVED),
    ),
    Row(
        "accept: connected",
        (arrive(),),
        lambda r: r.accept("c1", "alice", 2.0),
        [CallConnected("c1", "alice")],
        CallState.CONNECTED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.ON_CALL),
    ),
    Row(
        "reject: agent paused reject_delay, call back in line",
        (arrive(),),
        lambda r: r.reject("c1", "alice", 2.0),
        [
            AgentPaused("alice", 7.0, OfferOutcome.REJECTED),
            CallRedirected("c1", "alice", OfferOutcome.REJECTED),
        ],
        CallState.QUEUED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.IDLE),
    ),
    Row(
        "reject with another agent ready: offered to the next agent at once",
        (lambda r: r.ready("bob", 0.0), arrive()),
        lambda r: r.reject("c1", "alice", 2.0),
        [
            AgentPaused("alice", 7.0, OfferOutcome.REJECTED),
            CallRedirected("c1", "alice", OfferOutcome.REJECTED),
            OfferCall("c1", "bob", 22.0, 2),
        ],
        CallState.OFFERED,
    ),
    Row(
        "no answer: offer withdrawn, agent paused no_answer_delay, call back in line",
        (arrive(),),
        lambda r: r.advance(21.0),
        [
            WithdrawOffer("c1", "alice", OfferOutcome.NO_ANSWER),
            AgentPaused("alice", 31.0, OfferOutcome.NO_ANSWER),
            CallRedirected("c1", "alice", OfferOutcome.NO_ANSWER),
        ],
        CallState.QUEUED,
    ),
    Row(
        "max_no_answer misses in a row: agent set not ready with reason 'no answer'",
        (arrive(), lambda r: r.advance(21.0), lambda r: r.advance(31.0)),
        lambda r: r.advance(51.0),
        [
            WithdrawOffer("c1", "alice", OfferOutcome.NO_ANSWER),
            AgentNotReady("alice", "no answer"),
            CallRedirected("c1", "alice", OfferOutcome.NO_ANSWER),
        ],
        CallState.QUEUED,
        alice=(AgentStatus.NOT_READY, AgentActivity.IDLE),
    ),
    Row(
        "unreachable: agent paused unreachable_delay, call redirected at once",
        (arrive(),),
        lambda r: r.unreachable("c1", "alice", 2.0),
        [
            AgentPaused("alice", 6.0, OfferOutcome.UNREACHABLE),
            CallRedirected("c1", "alice", OfferOutcome.UNREACHABLE),
        ],
        CallState.QUEUED,
    ),
    Row(
        "caller hangs up while queued: abandoned",
        (lambda r: r.not_ready("alice", 0.0), arrive()),
        lambda r: r.hangup("c1", 9.0),
        [CallAbandoned("c1", 8.0, None)],
        None,
        finished=CallState.ABANDONED,
    ),
    Row(
        "caller hangs up while ringing: offer withdrawn, agent free without penalty",
        (arrive(),),
        lambda r: r.hangup("c1", 5.0),
        [WithdrawOffer("c1", "alice", OfferOutcome.WITHDRAWN), CallAbandoned("c1", 4.0, "alice")],
        None,
        finished=CallState.ABANDONED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.IDLE),
    ),
    Row(
        "caller hangs up while connected: ended by the caller, agent in wrap-up",
        (arrive(), lambda r: r.accept("c1", "alice", 2.0)),
        lambda r: r.hangup("c1", 12.0),
        [CallEnded("c1", "alice", 10.0, True)],
        None,
        finished=CallState.ENDED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.WRAP_UP),
    ),
    Row(
        "agent ends the call: ended, agent in wrap-up",
        (arrive(), lambda r: r.accept("c1", "alice", 2.0)),
        lambda r: r.end("c1", 32.0),
        [CallEnded("c1", "alice", 30.0, False)],
        None,
        finished=CallState.ENDED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.WRAP_UP),
    ),
    Row(
        "agent goes not ready while ringing: offer cancelled without penalty",
        (arrive(),),
        lambda r: r.not_ready("alice", 3.0, "lunch"),
        [
            WithdrawOffer("c1", "alice", OfferOutcome.CANCELLED),
            CallRedirected("c1", "alice", OfferOutcome.CANCELLED),
        ],
        CallState.QUEUED,
        alice=(AgentStatus.NOT_READY, AgentActivity.IDLE),
    ),
    Row(
        "agent logs out while ringing: offer cancelled, call back in line",
        (arrive(),),
        lambda r: r.logout("alice", 3.0),
        [
            WithdrawOffer("c1", "alice", OfferOutcome.CANCELLED),
            CallRedirected("c1", "alice", OfferOutcome.CANCELLED),
        ],
        CallState.QUEUED,
        alice=(AgentStatus.LOGGED_OUT, AgentActivity.IDLE),
    ),
    Row(
        "agent logs out during a call: the call carries on",
        (arrive(), lambda r: r.accept("c1", "alice", 2.0)),
        lambda r: r.logout("alice", 3.0),
        [],
        CallState.CONNECTED,
        alice=(AgentStatus.LOGGED_OUT, AgentActivity.ON_CALL),
    ),
    Row(
        "max_offers reached: overflowed",
        (arrive("vip"), lambda r: r.reject("c1", "alice", 2.0), lambda r: r.ready("bob", 3.0)),
        lambda r: r.reject("c1", "bob", 4.0),
        [
            AgentPaused("bob", 9.0, OfferOutcome.REJECTED),
            CallOverflowed("c1", OverflowReason.MAX_OFFERS, 3.0),
        ],
        None,
        finished=CallState.OVERFLOWED,
    ),
    Row(
        "max_wait passes while queued: overflowed",
        (lambda r: r.not_ready("alice", 0.0), arrive("slow")),
        lambda r: r.advance(31.0),
        [CallOverflowed("c1", OverflowReason.MAX_WAIT, 30.0)],
        None,
        finished=CallState.OVERFLOWED,
    ),
    Row(
        "max_wait passes while ringing: the offer runs to its end, then overflow",
        (
            lambda r: r.not_ready("alice", 0.0),
            arrive("slow"),
            lambda r: r.ready("alice", 25.0),
            lambda r: r.advance(40.0),
        ),
        lambda r: r.advance(45.0),
        [
            WithdrawOffer("c1", "alice", OfferOutcome.NO_ANSWER),
            AgentPaused("alice", 55.0, OfferOutcome.NO_ANSWER),
            CallOverflowed("c1", OverflowReason.MAX_WAIT, 44.0),
        ],
        None,
        finished=CallState.OVERFLOWED,
    ),
    Row(
        "max_wait_no_agent=0 with nobody logged in: overflowed on arrival",
        (lambda r: r.logout("alice", 0.0), lambda r: r.logout("bob", 0.0)),
        arrive("empty"),
        [CallOverflowed("c1", OverflowReason.NO_AGENT, 0.0)],
        None,
        finished=CallState.OVERFLOWED,
    ),
    Row(
        "max_wait_no_agent with an agent logged in but not ready: keeps waiting",
        (lambda r: r.not_ready("alice", 0.0), lambda r: r.logout("bob", 0.0), arrive("grace")),
        lambda r: r.advance(20.0),
        [],
        CallState.QUEUED,
    ),
    Row(
        "max_wait_no_agent with nobody logged in: overflowed after the grace time",
        (lambda r: r.logout("alice", 0.0), lambda r: r.logout("bob", 0.0), arrive("grace")),
        lambda r: r.advance(11.0),
        [CallOverflowed("c1", OverflowReason.NO_AGENT, 10.0)],
        None,
        finished=CallState.OVERFLOWED,
    ),
    Row(
        "node link lost while ringing: redirected as unreachable, no pause, no count",
        (lambda r: r.not_ready("alice", 0.0), lambda r: r.ready("bob", 0.0), arrive()),
        lambda r: r.node_down("remote", 2.0),
        [
            WithdrawOffer("c1", "bob", OfferOutcome.UNREACHABLE),
            CallRedirected("c1", "bob", OfferOutcome.UNREACHABLE),
        ],
        CallState.QUEUED,
    ),
    Row(
        "node link back: its ready agents are offered waiting calls",
        (
            lambda r: r.not_ready("alice", 0.0),
            lambda r: r.ready("bob", 0.0),
            lambda r: r.node_down("remote", 0.5),
            arrive(),
        ),
        lambda r: r.node_up("remote", 2.0),
        [OfferCall("c1", "bob", 22.0, 1)],
        CallState.OFFERED,
    ),
    Row(
        "wrap-up ends by timer: the agent is offered the next waiting call",
        (
            arrive(),
            lambda r: r.accept("c1", "alice", 2.0),
            lambda r: r.end("c1", 10.0),
            lambda r: r.arrive(call("c2", at=11.0), 11.0),
        ),
        lambda r: r.advance(13.0),
        [OfferCall("c2", "alice", 33.0, 1)],
        None,
        finished=CallState.ENDED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.RESERVED),
    ),
    Row(
        "wrap-up finished by the agent: offered at once",
        (
            arrive(),
            lambda r: r.accept("c1", "alice", 2.0),
            lambda r: r.end("c1", 10.0),
            lambda r: r.arrive(call("c2", at=11.0), 11.0),
        ),
        lambda r: r.finish_wrap_up("alice", 11.5),
        [OfferCall("c2", "alice", 31.5, 1)],
        None,
        finished=CallState.ENDED,
    ),
    Row(
        "a supervisor assigns a waiting call to a paused agent",
        (arrive(), lambda r: r.reject("c1", "alice", 2.0)),
        lambda r: r.assign("c1", "alice", 3.0),
        [OfferCall("c1", "alice", 23.0, 2)],
        CallState.OFFERED,
        alice=(AgentStatus.AVAILABLE, AgentActivity.RESERVED),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_transition(row: Row) -> None:
    """Each transition emits exactly its decisions and leaves call and agent as listed."""
    r = staffed()
    for step in row.setup:
        step(r)
    assert row.step(r) == row.decisions
    if row.call_state is None:
        assert r.finished("c1") is row.finished
    else:
        assert r.call("c1").state is row.call_state
    if row.alice is not None:
        view = r.agent("alice")
        assert (view.status, view.activity) == row.alice


def test_assign_picks_an_agent_outside_the_queue() -> None:
    """A supervisor may assign a call to an available agent who is not a member of its queue."""
    r = Router(CONFIG)
    r.login(Agent("carol", queues=["other"]), 0.0, ready=True)
    r.arrive(call("c1"), 1.0)
    assert r.assign("c1", "carol", 2.0) == [OfferCall("c1", "carol", 22.0, 1)]


def test_accept_resets_the_miss_counters() -> None:
    """An accept resets the no-answer count, as mod_callcenter does on answer."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    r.advance(21.0)
    assert r.agent("alice").no_answers == 1
    r.advance(31.0)  # pause over: offered again
    r.accept("c1", "alice", 32.0)
    assert r.agent("alice").no_answers == 0


def test_ready_resets_the_miss_counters_after_max_no_answer() -> None:
    """An agent set not ready for missed offers comes back with a clean count."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    r.advance(21.0)
    r.advance(31.0)
    r.advance(51.0)
    assert r.agent("alice").status is AgentStatus.NOT_READY
    r.ready("alice", 60.0)
    view = r.agent("alice")
    assert view.no_answers == 0
    assert view.call_id == "c1"


def test_rejects_do_not_count_as_misses() -> None:
    """Rejecting is not a miss: it never moves the agent toward not ready by default."""
    r = staffed()
    r.arrive(call("c1"), 0.0)
    now = 0.0
    for _ in range(5):
        now += 1
        r.reject("c1", "alice", now)
        now += 5
        r.advance(now)
    view = r.agent("alice")
    assert (view.rejects, view.no_answers, view.status) == (5, 0, AgentStatus.AVAILABLE)


def test_non_reassignable_call_is_not_offered_again_to_the_rejecting_agent() -> None:
    """With reassignable=False the rejecting agent never sees that call again."""
    r = staffed()
    r.arrive(call("c1", "strict"), 1.0)
    r.reject("c1", "alice", 2.0)
    assert r.advance(8.0) == []
    assert r.call("c1").state is CallState.QUEUED
    assert r.call("c1").excluded == frozenset({"alice"})
    assert r.ready("bob", 9.0) == [OfferCall("c1", "bob", 29.0, 2)]


def test_reassignable_call_comes_back_to_the_rejecting_agent_after_the_pause() -> None:
    """With reassignable=True (the default) the call returns once the agent's pause ends."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    r.reject("c1", "alice", 2.0)
    assert r.advance(7.0) == [OfferCall("c1", "alice", 27.0, 2)]


def test_redirected_call_keeps_its_place_in_line() -> None:
    """A call that comes back from a reject is served before calls that arrived after it."""
    r = staffed()
    r.arrive(call("c1", at=1.0), 1.0)
    r.arrive(call("c2", at=2.0), 2.0)
    r.reject("c1", "alice", 3.0)
    assert r.ready("bob", 4.0) == [OfferCall("c1", "bob", 24.0, 2)]


def test_priority_is_served_before_arrival_order() -> None:
    """A higher-priority call is offered first, then calls in arrival order."""
    r = staffed()
    r.not_ready("alice", 0.0)
    r.arrive(call("c1", at=1.0), 1.0)
    r.arrive(call("c2", at=2.0, priority=5), 2.0)
    r.arrive(call("c3", at=3.0), 3.0)
    assert r.ready("alice", 4.0) == [OfferCall("c2", "alice", 24.0, 1)]
    assert r.ready("bob", 4.0) == [OfferCall("c1", "bob", 24.0, 1)]


def test_call_needing_a_skill_skips_agents_without_it() -> None:
    """A call that needs a skill goes only to an agent who has it, whatever the strategy."""
    r = staffed()
    r.not_ready("alice", 0.0)
    r.ready("bob", 0.0)
    assert r.arrive(call("c1", skills={"fr"}), 1.0) == []
    assert r.ready("alice", 2.0) == [OfferCall("c1", "alice", 22.0, 1)]


def test_paused_agent_is_offered_nothing_until_the_pause_ends() -> None:
    """After a reject the agent is not offered another call until reject_delay has passed."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    r.reject("c1", "alice", 2.0)
    r.arrive(call("c2"), 3.0)
    assert r.agent("alice").eligible is False
    assert r.next_deadline() == 7.0
    assert r.advance(6.9) == []


def test_finished_call_ids_are_remembered_only_up_to_the_limit() -> None:
    """The router keeps at most `remember_finished` finished ids, oldest dropped first."""
    r = Router(attrs.evolve(CONFIG, remember_finished=2))
    for n in range(3):
        r.arrive(call(f"c{n}"), 0.0)
        r.hangup(f"c{n}", 1.0)
    assert r.finished("c0") is None
    assert r.finished("c2") is CallState.ABANDONED


def test_call_state_and_agent_profile_read_what_the_views_hold() -> None:
    """`call_state` and `agent_profile` answer as `call().state` and `agent().agent`, errors too."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    assert r.call_state("c1") is r.call("c1").state is CallState.OFFERED
    r.accept("c1", r.call("c1").agent_id or "", 2.0)
    assert r.call_state("c1") is CallState.CONNECTED
    assert r.agent_profile("alice") is r.agent("alice").agent is ALICE
    r.logout("bob", 3.0)
    assert r.agent_profile("bob") is BOB  # known after logging out, as the view is
    r.hangup("c1", 4.0)
    for read in (r.call, r.call_state):
        with pytest.raises(CallStateError, match="already finished"):
            read("c1")
        with pytest.raises(UnknownCall):
            read("c9")
    for read_agent in (r.agent, r.agent_profile):
        with pytest.raises(UnknownAgent):
            read_agent("zed")


def test_router_repr_counts_without_personal_data() -> None:
    """The router's repr shows counts, never callers."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    assert repr(r) == "<Router calls=1 agents=2 nodes_down=0>"
    assert "4155550100" not in repr(r.snapshot())


def test_agent_assigned_during_a_pause_comes_back_after_the_call() -> None:
    """A supervisor's pick during a pause does not leave the agent stuck once the call ends."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    r.reject("c1", "alice", 2.0)  # alice paused until 7
    r.arrive(call("c2"), 3.0)
    r.assign("c2", "alice", 3.0)
    r.accept("c2", "alice", 4.0)
    r.end("c2", 5.0)
    assert r.advance(8.0) == [OfferCall("c1", "alice", 28.0, 2)]


def test_no_agent_check_repeats_while_agents_are_present() -> None:
    """max_wait_no_agent is checked again while someone could take the call."""
    r = staffed()
    r.not_ready("alice", 0.0)
    r.logout("bob", 0.0)
    r.arrive(call("c1", "grace"), 0.0)
    assert r.advance(10.0) == []
    r.logout("alice", 12.0)
    assert r.advance(20.0) == [CallOverflowed("c1", OverflowReason.NO_AGENT, 20.0)]


def test_time_away_does_not_count_as_idle_time() -> None:
    """longest-idle counts from when an agent became ready, not from login."""
    r = Router(CONFIG)
    r.login(Agent("early", queues=["sales"]), 0.0)
    r.login(Agent("late", queues=["sales"]), 0.0, ready=True)
    r.ready("early", 100.0)
    assert r.arrive(call("c1"), 101.0) == [OfferCall("c1", "late", 121.0, 1)]


def test_no_answer_from_the_platform_is_the_same_as_the_deadline() -> None:
    """A platform's own ring timeout: withdrawn, paused, counted, redirected."""
    r = staffed()
    r.arrive(call("c1"), 1.0)
    assert r.no_answer("c1", "alice", 5.0) == [
        WithdrawOffer("c1", "alice", OfferOutcome.NO_ANSWER),
        AgentPaused("alice", 15.0, OfferOutcome.NO_ANSWER),
        CallRedirected("c1", "alice", OfferOutcome.NO_ANSWER),
    ]
    assert r.agent("alice").no_answers == 1
