"""A Hypothesis state machine over the router: random event sequences, invariants after each."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from callresilience import Agent, Call, RoutingError
from callresilience.routing import (
    AgentActivity,
    AgentStatus,
    CallAbandoned,
    CallEnded,
    CallOverflowed,
    CallState,
    Decision,
    OfferCall,
    QueueConfig,
    Router,
    RouterConfig,
    Strategy,
)

AGENTS = (
    Agent("a0", queues={"q1": 1, "q2": 2}, node="n1"),
    Agent("a1", queues={"q1": 1}, skills={"fr"}, node="n1"),
    Agent("a2", queues={"q1": 2, "q2": 1}, skills={"fr", "vip"}, node="n2"),
    Agent("a3", queues={"q2": 1}, node="n2"),
    Agent("a4", queues={"q3": 1}, skills={"vip"}, node="n3"),
)
NODES = ("n1", "n2", "n3")
QUEUES = ("q1", "q2", "q3")
TERMINAL_DECISIONS = (CallAbandoned, CallEnded, CallOverflowed)

CONFIG = RouterConfig(
    offer_timeout=10,
    wrap_up_time=2,
    reject_delay=3,
    no_answer_delay=4,
    unreachable_delay=1,
    max_no_answer=2,
    max_rejects=3,
    max_unreachable=2,
    queues=(
        QueueConfig("q1", max_wait=60, max_offers=4),
        QueueConfig("q2", strategy=Strategy.ROUND_ROBIN, reassignable=False, max_wait_no_agent=5),
        QueueConfig("q3", strategy=Strategy.RANDOM, max_wait_no_agent=0),
    ),
)


class RouterMachine(RuleBasedStateMachine):
    """Drives one router with random events and checks the ACD invariants after each."""

    def __init__(self) -> None:
        super().__init__()
        self.router = Router(CONFIG)
        self.now = 0.0
        self.serial = 0
        self.arrived: list[str] = []
        self.terminal: Counter[str] = Counter()

    # -- plumbing --------------------------------------------------------------------------

    def apply(self, operation: Callable[[], list[Decision]]) -> None:
        """Run an operation; a refused one must leave the state exactly as it was."""
        before = self.router.snapshot()
        try:
            decisions = operation()
        except RoutingError:
            assert self.router.snapshot() == before
            return
        for decision in decisions:
            if isinstance(decision, TERMINAL_DECISIONS):
                self.terminal[decision.call_id] += 1
            if isinstance(decision, OfferCall):
                assert decision.deadline > self.now

    def active(self, *states: CallState) -> list[str]:
        return [c.call.call_id for c in self.router.snapshot().calls if c.state in states]

    # -- agents ----------------------------------------------------------------------------

    @initialize(ready=st.lists(st.booleans(), min_size=len(AGENTS), max_size=len(AGENTS)))
    def staff(self, ready: list[bool]) -> None:
        """Most runs start with every agent logged in, some of them ready."""
        for agent, is_ready in zip(AGENTS, ready, strict=True):
            self.apply(lambda a=agent, r=is_ready: self.router.login(a, self.now, ready=r))  # type: ignore[misc]

    @rule(index=st.integers(0, len(AGENTS) - 1), ready=st.booleans())
    def login(self, index: int, ready: bool) -> None:
        self.apply(lambda: self.router.login(AGENTS[index], self.now, ready=ready))

    @rule(index=st.integers(0, len(AGENTS) - 1))
    def ready(self, index: int) -> None:
        self.apply(lambda: self.router.ready(AGENTS[index].agent_id, self.now))

    @rule(index=st.integers(0, len(AGENTS) - 1))
    def not_ready(self, index: int) -> None:
        self.apply(lambda: self.router.not_ready(AGENTS[index].agent_id, self.now, "break"))

    @rule(index=st.integers(0, len(AGENTS) - 1))
    def logout(self, index: int) -> None:
        self.apply(lambda: self.router.logout(AGENTS[index].agent_id, self.now))

    @rule(index=st.integers(0, len(AGENTS) - 1))
    def finish_wrap_up(self, index: int) -> None:
        self.apply(lambda: self.router.finish_wrap_up(AGENTS[index].agent_id, self.now))

    @rule(node=st.sampled_from(NODES), up=st.booleans())
    def node_link(self, node: str, up: bool) -> None:
        change = self.router.node_up if up else self.router.node_down
        self.apply(lambda: change(node, self.now))

    # -- calls -----------------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 2),
        skills=st.sets(st.sampled_from(["fr", "vip"]), max_size=2),
    )
    def arrive(self, queue: str, priority: int, skills: set[str]) -> None:
        self.serial += 1
        call = Call(f"c{self.serial}", "+14155550100", queue, self.now, priority, skills)
        self.arrived.append(call.call_id)
        self.apply(lambda: self.router.arrive(call, self.now))

    @precondition(lambda self: self.arrived)
    @rule(data=st.data(), index=st.integers(0, len(AGENTS) - 1))
    def answer(self, data: st.DataObject, index: int) -> None:
        """Accept, reject or fail an offer: usually the real one, sometimes a wrong pairing."""
        offered = self.active(CallState.OFFERED)
        if offered and data.draw(st.booleans()):
            call_id = data.draw(st.sampled_from(offered))
            agent_id = self.router.call(call_id).agent_id or ""
        else:
            call_id = data.draw(st.sampled_from(self.arrived))
            agent_id = AGENTS[index].agent_id
        verb = data.draw(st.sampled_from(["accept", "reject", "unreachable"]))
        action = getattr(self.router, verb)
        self.apply(lambda: action(call_id, agent_id, self.now))

    @precondition(lambda self: self.active(CallState.OFFERED))
    @rule(data=st.data())
    def accept_offer(self, data: st.DataObject) -> None:
        """The common path: the agent being offered a call takes it."""
        call_id = data.draw(st.sampled_from(self.active(CallState.OFFERED)))
        agent_id = self.router.call(call_id).agent_id or ""
        self.apply(lambda: self.router.accept(call_id, agent_id, self.now))

    @precondition(lambda self: self.arrived)
    @rule(data=st.data())
    def hangup(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.arrived))
        self.apply(lambda: self.router.hangup(call_id, self.now))

    @precondition(lambda self: self.arrived)
    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        connected = self.active(CallState.CONNECTED)
        call_id = data.draw(st.sampled_from(connected or self.arrived))
        self.apply(lambda: self.router.end(call_id, self.now))

    @precondition(lambda self: self.arrived)
    @rule(data=st.data(), index=st.integers(0, len(AGENTS) - 1))
    def assign(self, data: st.DataObject, index: int) -> None:
        call_id = data.draw(st.sampled_from(self.arrived))
        self.apply(lambda: self.router.assign(call_id, AGENTS[index].agent_id, self.now))

    @rule(step=st.floats(0, 15, allow_nan=False))
    def advance(self, step: float) -> None:
        self.now += step
        self.apply(lambda: self.router.advance(self.now))

    @rule()
    def advance_to_next_deadline(self) -> None:
        deadline = self.router.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self.apply(lambda: self.router.advance(self.now))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def one_offer_or_call_per_agent_and_per_call(self) -> None:
        snap = self.router.snapshot()
        holders: Counter[str] = Counter()
        for agent in snap.agents:
            busy = agent.activity in (AgentActivity.RESERVED, AgentActivity.ON_CALL)
            assert busy == (agent.call_id is not None)
            if agent.call_id is not None:
                holders[agent.call_id] += 1
        assert all(n == 1 for n in holders.values())
        for call in snap.calls:
            with_agent = call.state in (CallState.OFFERED, CallState.CONNECTED)
            assert with_agent == (call.agent_id is not None)
            if with_agent:
                assert self.router.agent(call.agent_id or "").call_id == call.call.call_id
                assert holders[call.call.call_id] == 1

    @invariant()
    def the_cheap_reads_match_the_views(self) -> None:
        """`call_state` and `agent_profile` say what the snapshot's views say."""
        snap = self.router.snapshot()
        for call in snap.calls:
            assert self.router.call_state(call.call.call_id) is call.state
        for agent in snap.agents:
            assert self.router.agent_profile(agent.agent.agent_id) is agent.agent

    @invariant()
    def terminal_at_most_once_and_only_for_finished_calls(self) -> None:
        assert all(n == 1 for n in self.terminal.values())
        for call in self.router.snapshot().calls:
            assert self.terminal[call.call.call_id] == 0
            assert not call.state.terminal

    @invariant()
    def eligibility_matches_state(self) -> None:
        """An agent is in the pool exactly when available, idle, unpaused and linked."""
        snap = self.router.snapshot()
        for agent in snap.agents:
            expected = (
                agent.status is AgentStatus.AVAILABLE
                and agent.activity is AgentActivity.IDLE
                and agent.paused_until <= self.now
                and agent.agent.node not in snap.nodes_down
            )
            assert agent.eligible == expected, agent

    @invariant()
    def no_call_waits_while_an_eligible_agent_is_idle(self) -> None:
        snap = self.router.snapshot()
        eligible = [a for a in snap.agents if a.eligible]
        for call in snap.calls:
            if call.state is not CallState.QUEUED:
                continue
            for agent in eligible:
                can_take = (
                    agent.agent.level(call.call.queue) is not None
                    and call.call.skills <= agent.agent.skills
                    and agent.agent.agent_id not in call.excluded
                )
                assert not can_take, (call, agent)

    @invariant()
    def no_agent_is_stuck(self) -> None:
        """A wrapping-up or paused agent always has the timer that will free them."""
        snap = self.router.snapshot()
        resumes = {key for _, kind, key in snap.timers if kind == "agent_resume"}
        for agent in snap.agents:
            waiting = agent.activity is AgentActivity.WRAP_UP or (
                agent.activity is AgentActivity.IDLE and agent.paused_until > self.now
            )
            if waiting:
                assert agent.agent.agent_id in resumes, agent

    @invariant()
    def counters_never_negative_and_deadlines_ahead(self) -> None:
        snap = self.router.snapshot()
        for agent in snap.agents:
            assert min(agent.calls_answered, agent.rejects, agent.no_answers) >= 0
            assert agent.unreachables >= 0
            assert agent.talk_time >= 0
        for call in snap.calls:
            if call.deadline is not None:
                assert call.deadline > self.now
        deadline = self.router.next_deadline()
        assert deadline is None or deadline > self.now or math.isclose(deadline, self.now)

    def teardown(self) -> None:
        """Every call reaches exactly one terminal state once all callers hang up."""
        for call_id in list(self.arrived):
            if self.router.finished(call_id) is None:
                self.apply(lambda c=call_id: self.router.hangup(c, self.now))  # type: ignore[misc]
        for call_id in self.arrived:
            assert self.terminal[call_id] == 1, call_id
        assert self.router.active_count == 0


RouterMachine.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRouterMachine = RouterMachine.TestCase
TestRouterMachine.__doc__ = "Random event sequences keep every ACD invariant."
