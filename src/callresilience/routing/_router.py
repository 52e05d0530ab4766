"""The ACD core: which agent is offered which call, and what happens when an offer ends.

The router is sans-I/O, in the manner of h11: it holds all routing state, every operation takes
`now` and returns the decisions it produced, and it never reads a clock, sleeps or touches a
socket. An event that the state does not allow raises a `RoutingError` and changes nothing: all
checks run before the first mutation.

Time moves only through the operations' `now` and through `advance(now)`, which fires due
timers (offer deadlines, pauses, wrap-up, maximum waits). The shell calls `advance` at
`next_deadline()` and before it feeds an event at a later time.

Selection does not scan agents: each queue keeps, per tier level, a heap of its eligible agents
ordered by the queue's strategy, with lazy deletion (an entry is live while its version matches
the agent's). Waiting calls are kept sorted by (priority, arrival), so a redirected call goes
back to its own place in line.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import attrs

from .._errors import (
    AgentStateError,
    CallStateError,
    DuplicateCall,
    InvalidInput,
    OfferNotPending,
    UnknownAgent,
    UnknownCall,
)
from .._model import Agent, Call, check_identifier
from ._types import (
    AgentActivity,
    AgentNotReady,
    AgentPaused,
    AgentStatus,
    AgentView,
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    CallState,
    CallView,
    Decision,
    OfferCall,
    OfferOutcome,
    OverflowReason,
    QueueConfig,
    RouterConfig,
    RouterSnapshot,
    Strategy,
    WithdrawOffer,
)

__all__ = ["Router"]

_NEVER: Final = -math.inf

# Timer kinds. Timers due at the same instant fire in the order they were set.
_OFFER_DEADLINE: Final = 0
_AGENT_RESUME: Final = 1
_MAX_WAIT: Final = 2
_NO_AGENT: Final = 3
_TIMER_NAMES: Final = ("offer_deadline", "agent_resume", "max_wait", "no_agent")

_Timer = tuple[float, int, int, str, int]  # (time, seq, kind, id, token)
_PoolEntry = tuple[float, int, int, str]  # (strategy key, login position, version, agent id)
_WaitEntry = tuple[int, int, str]  # (-priority, arrival position, call id)


@attrs.define(slots=True, eq=False)
class _AgentRec:
    agent: Agent
    position: int
    idle_since: float
    status: AgentStatus = AgentStatus.LOGGED_OUT
    reason: str = ""
    activity: AgentActivity = AgentActivity.IDLE
    call_id: str | None = None
    paused_until: float = _NEVER
    token: int = 0  # validity of the pending resume timer
    version: int = 0  # validity of pool entries
    in_pool: bool = False
    calls_answered: int = 0
    talk_time: float = 0.0
    last_offered: int = 0
    rejects: int = 0
    no_answers: int = 0
    unreachables: int = 0


@attrs.define(slots=True, eq=False)
class _CallRec:
    call: Call
    position: int
    state: CallState = CallState.QUEUED
    agent_id: str | None = None
    offers: int = 0
    deadline: float = 0.0
    connected_at: float = 0.0
    excluded: set[str] | None = None

    @property
    def wait_key(self) -> _WaitEntry:
        return (-self.call.priority, self.position, self.call.call_id)


@attrs.define(slots=True, eq=False)
class _Queue:
    config: QueueConfig
    key: Callable[[_AgentRec], float]
    waiting: list[_WaitEntry] = attrs.field(factory=list)
    pools: dict[int, list[_PoolEntry]] = attrs.field(factory=dict)
    live: dict[int, int] = attrs.field(factory=dict)
    levels: list[int] = attrs.field(factory=list)
    members: set[str] = attrs.field(factory=set)


class Router:
    """The pure ACD core. See the module docstring for the contract.

    Args:
        config: Router-wide settings and per-queue settings.

    Every public operation returns the list of decisions it produced, in order.
    """

    def __init__(self, config: RouterConfig | None = None) -> None:
        self._config = config or RouterConfig()
        self._queue_configs = {q.name: q for q in self._config.queues}
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _AgentRec] = {}
        self._calls: dict[str, _CallRec] = {}
        # Oldest first. An OrderedDict drops its oldest in constant time; a dict would scan
        # the slots its earlier drops left empty, growing with `remember_finished`.
        self._finished: OrderedDict[str, CallState] = OrderedDict()
        self._by_node: dict[str, set[str]] = {}
        self._nodes_down: set[str] = set()
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._arrivals = itertools.count(1)
        self._logins = itertools.count(1)
        self._offers = itertools.count(1)
        self._rng = random.Random(self._config.seed)
        self._fresh_agents: list[_AgentRec] = []
        self._fresh_calls: list[_CallRec] = []

    @property
    def config(self) -> RouterConfig:
        """The settings the router runs with."""
        return self._config

    def __repr__(self) -> str:
        return (
            f"<Router calls={len(self._calls)} agents={len(self._agents)} "
            f"nodes_down={len(self._nodes_down)}>"
        )

    # -- agents -------------------------------------------------------------------------------

    def login(self, agent: Agent, now: float, *, ready: bool = False) -> list[Decision]:
        """Log an agent in, not ready unless `ready`.

        An agent who logged out may log in again with new queues, skills or node.

        Raises:
            AgentStateError: The agent is already logged in.
        """
        self._check_now(now)
        if not isinstance(agent, Agent):
            raise InvalidInput("agent: expected an Agent", field="agent")
        rec = self._agents.get(agent.agent_id)
        if rec is not None and rec.status is not AgentStatus.LOGGED_OUT:
            raise AgentStateError(
                f"agent {agent.agent_id!r} is already logged in; log out first to change "
                "their queues, skills or node"
            )
        if rec is None:
            rec = _AgentRec(agent, next(self._logins), idle_since=now)
            self._agents[agent.agent_id] = rec
        else:
            self._unindex(rec)
            rec.agent = agent
            rec.idle_since = now
        self._index(rec)
        rec.status = AgentStatus.AVAILABLE if ready else AgentStatus.NOT_READY
        rec.reason = "" if ready else "login"
        out: list[Decision] = []
        self._maybe_enter_pool(rec, now)
        self._dispatch(now, out)
        return out

    def ready(self, agent_id: str, now: float) -> list[Decision]:
        """Make an agent available. Resets the agent's miss counters.

        Raises:
            UnknownAgent: No such agent.
            AgentStateError: The agent is logged out.
        """
        self._check_now(now)
        rec = self._logged_in(agent_id, "make available")
        out: list[Decision] = []
        if rec.status is not AgentStatus.AVAILABLE:
            rec.idle_since = max(rec.idle_since, now)  # time away is not idle time
        rec.status = AgentStatus.AVAILABLE
        rec.reason = ""
        rec.rejects = rec.no_answers = rec.unreachables = 0
        self._maybe_enter_pool(rec, now)
        self._dispatch(now, out)
        return out

    def not_ready(self, agent_id: str, now: float, reason: str = "") -> list[Decision]:
        """Set an agent not ready. A ringing offer is withdrawn without penalty.

        Raises:
            UnknownAgent: No such agent.
            AgentStateError: The agent is logged out.
        """
        self._check_now(now)
        rec = self._logged_in(agent_id, "set not ready")
        if not isinstance(reason, str) or len(reason) > 100:
            raise InvalidInput("reason: give a string of at most 100 characters", field="reason")
        out: list[Decision] = []
        self._set_away(rec, AgentStatus.NOT_READY, reason, now, out)
        return out

    def logout(self, agent_id: str, now: float) -> list[Decision]:
        """Log an agent out. A ringing offer is withdrawn; a connected call carries on.

        Raises:
            UnknownAgent: No such agent.
            AgentStateError: The agent is already logged out.
        """
        self._check_now(now)
        rec = self._logged_in(agent_id, "log out")
        out: list[Decision] = []
        self._set_away(rec, AgentStatus.LOGGED_OUT, "", now, out)
        return out

    def finish_wrap_up(self, agent_id: str, now: float) -> list[Decision]:
        """End an agent's wrap-up early.

        Raises:
            UnknownAgent: No such agent.
            AgentStateError: The agent is not in wrap-up.
        """
        self._check_now(now)
        rec = self._agent(agent_id)
        if rec.activity is not AgentActivity.WRAP_UP:
            raise AgentStateError(
                f"agent {agent_id!r} is {rec.activity.value}, not in wrap-up; nothing to finish"
            )
        out: list[Decision] = []
        self._to_idle(rec, now)
        self._dispatch(now, out)
        return out

    # -- calls --------------------------------------------------------------------------------

    def arrive(self, call: Call, now: float) -> list[Decision]:
        """Queue a new call and offer it if an agent is free.

        Raises:
            DuplicateCall: The call id is in use, or was used by a call that finished.
        """
        self._check_now(now)
        if not isinstance(call, Call):
            raise InvalidInput("call: expected a Call", field="call")
        call_id = call.call_id
        if call_id in self._calls:
            raise DuplicateCall(
                f"call id {call_id!r} is already in use by a waiting or connected call; every "
                "call needs its own id"
            )
        if call_id in self._finished:
            raise DuplicateCall(
                f"call id {call_id!r} belonged to a call that finished; every call needs its "
                "own id, because ServiceNow records are matched to calls by it"
            )
        rec = _CallRec(call, next(self._arrivals))
        self._calls[call_id] = rec
        queue = self._queue(call.queue)
        out: list[Decision] = []
        cfg = queue.config
        if cfg.max_wait is not None:
            self._schedule(call.arrived + cfg.max_wait, _MAX_WAIT, call_id, rec.position)
        if cfg.max_wait_no_agent is not None:
            if cfg.max_wait_no_agent == 0 and not self._has_agent_for(queue, rec):
                self._finish(rec, CallState.OVERFLOWED)
                out.append(CallOverflowed(call_id, OverflowReason.NO_AGENT, now - call.arrived))
                return out
            self._schedule(call.arrived + cfg.max_wait_no_agent, _NO_AGENT, call_id, rec.position)
        self._enqueue(rec)
        self._dispatch(now, out)
        return out

    def accept(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The agent accepted the offer: connect the call.

        Raises:
            UnknownCall, UnknownAgent: No such call or agent.
            OfferNotPending: The offer expired, was withdrawn, went to another agent, or was
                already accepted.
        """
        self._check_now(now)
        call, rec = self._pending_offer(call_id, agent_id, now, "accept")
        rec.activity = AgentActivity.ON_CALL
        rec.rejects = rec.no_answers = rec.unreachables = 0
        rec.calls_answered += 1
        call.state = CallState.CONNECTED
        call.connected_at = now
        return [CallConnected(call_id, agent_id)]

    def reject(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The agent rejected the offer: pause them and offer the call to the next agent.

        Raises:
            UnknownCall, UnknownAgent: No such call or agent.
            OfferNotPending: The offer is not open for this agent.
        """
        return self._close_offer(call_id, agent_id, now, OfferOutcome.REJECTED, "reject")

    def unreachable(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The agent's channel failed to deliver the offer: redirect the call at once.

        Raises:
            UnknownCall, UnknownAgent: No such call or agent.
            OfferNotPending: The offer is not open for this agent.
        """
        return self._close_offer(
            call_id, agent_id, now, OfferOutcome.UNREACHABLE, "report unreachable for"
        )

    def no_answer(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """The platform says the offer rang out before the router's deadline.

        The same as the deadline passing: the offer is withdrawn, the agent paused and the
        miss counted, and the call goes to the next agent.

        Raises:
            UnknownCall, UnknownAgent: No such call or agent.
            OfferNotPending: The offer is not open for this agent.
        """
        return self._close_offer(
            call_id, agent_id, now, OfferOutcome.NO_ANSWER, "report no answer for"
        )

    def assign(self, call_id: str, agent_id: str, now: float) -> list[Decision]:
        """Offer a queued call to a chosen agent, ahead of the strategy (a supervisor's pick).

        The agent must be available and idle on a linked node; queue membership, skills and
        a pause are not checked, since a person chose.

        Raises:
            UnknownCall, UnknownAgent: No such call or agent.
            CallStateError: The call is not waiting in a queue.
            AgentStateError: The agent cannot take an offer now.
        """
        self._check_now(now)
        call = self._call(call_id)
        rec = self._agent(agent_id)
        if call.state is not CallState.QUEUED:
            raise CallStateError(
                f"call {call_id!r} is {call.state.value}; only a queued call can be assigned"
            )
        if (
            rec.status is not AgentStatus.AVAILABLE
            or rec.activity is not AgentActivity.IDLE
            or rec.agent.node in self._nodes_down
        ):
            raise AgentStateError(
                f"agent {agent_id!r} is {rec.status.value}/{rec.activity.value}"
                + (" on an unlinked node" if rec.agent.node in self._nodes_down else "")
                + "; assign to an available, idle agent"
            )
        out: list[Decision] = []
        rec.paused_until = min(rec.paused_until, now)  # a person's pick overrides a pause
        self._offer(call, rec, now, out)
        self._dispatch(now, out)
        return out

    def hangup(self, call_id: str, now: float) -> list[Decision]:
        """The caller hung up: abandon a waiting call, withdraw a ringing offer, or end a call.

        Raises:
            UnknownCall: No such call.
            CallStateError: The call already finished.
        """
        self._check_now(now)
        call = self._call(call_id)
        out: list[Decision] = []
        if call.state is CallState.CONNECTED:
            self._finish_connected(call, now, out, by_caller=True)
        else:
            agent_id = call.agent_id
            if call.state is CallState.OFFERED:
                rec = self._agents[agent_id]  # type: ignore[index]
                out.append(WithdrawOffer(call_id, rec.agent.agent_id, OfferOutcome.WITHDRAWN))
                self._end_offer(call, rec, OfferOutcome.WITHDRAWN, now, out, requeue=False)
            else:
                self._unqueue(call)
            waited = now - call.call.arrived
            self._finish(call, CallState.ABANDONED)
            out.append(CallAbandoned(call_id, waited, agent_id))
        self._dispatch(now, out)
        return out

    def end(self, call_id: str, now: float) -> list[Decision]:
        """The agent (or the platform) ended a connected call.

        Raises:
            UnknownCall: No such call.
            CallStateError: The call is not connected.
        """
        self._check_now(now)
        call = self._call(call_id)
        if call.state is not CallState.CONNECTED:
            raise CallStateError(
                f"call {call_id!r} is {call.state.value}, not connected; a call that was never "
                "answered ends with hangup()"
            )
        out: list[Decision] = []
        self._finish_connected(call, now, out, by_caller=False)
        self._dispatch(now, out)
        return out

    # -- nodes --------------------------------------------------------------------------------

    def node_down(self, node: str, now: float) -> list[Decision]:
        """A node lost its link: offer nothing to its agents, redirect its ringing offers."""
        self._check_now(now)
        check_identifier("node", node)
        out: list[Decision] = []
        if node in self._nodes_down:
            return out
        self._nodes_down.add(node)
        for agent_id in sorted(self._by_node.get(node, ())):
            rec = self._agents[agent_id]
            self._leave_pool(rec)
            if rec.activity is AgentActivity.RESERVED:
                call = self._calls[rec.call_id]  # type: ignore[index]
                out.append(WithdrawOffer(call.call.call_id, agent_id, OfferOutcome.UNREACHABLE))
                self._end_offer(call, rec, OfferOutcome.UNREACHABLE, now, out, penalize=False)
        self._dispatch(now, out)
        return out

    def node_up(self, node: str, now: float) -> list[Decision]:
        """A node's link is back: its agents may be offered calls again."""
        self._check_now(now)
        check_identifier("node", node)
        out: list[Decision] = []
        if node not in self._nodes_down:
            return out
        self._nodes_down.discard(node)
        for agent_id in sorted(self._by_node.get(node, ())):
            self._maybe_enter_pool(self._agents[agent_id], now)
        self._dispatch(now, out)
        return out

    # -- time ---------------------------------------------------------------------------------

    def advance(self, now: float) -> list[Decision]:
        """Fire every timer due at or before `now`, in order, and return what it produced."""
        self._check_now(now)
        out: list[Decision] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, key, token = heapq.heappop(timers)
            if kind == _OFFER_DEADLINE:
                call = self._calls.get(key)
                if call is None or call.state is not CallState.OFFERED or call.offers != token:
                    continue
                rec = self._agents[call.agent_id]  # type: ignore[index]
                out.append(WithdrawOffer(key, rec.agent.agent_id, OfferOutcome.NO_ANSWER))
                self._end_offer(call, rec, OfferOutcome.NO_ANSWER, now, out)
            elif kind == _AGENT_RESUME:
                agent = self._agents.get(key)
                if agent is None or agent.token != token:
                    continue
                if agent.activity is AgentActivity.WRAP_UP:
                    self._to_idle(agent, now)
                else:
                    self._maybe_enter_pool(agent, now)
            else:
                call = self._calls.get(key)
                if call is None or call.position != token or call.state.terminal:
                    continue
                queue = self._queues[call.call.queue]
                if kind == _MAX_WAIT:
                    # A ringing call is never taken from the agent; it overflows, if its wait
                    # is over, when the offer ends without an accept.
                    if call.state is CallState.QUEUED:
                        self._finish_overflow(call, OverflowReason.MAX_WAIT, now, out)
                elif call.state is CallState.QUEUED and not self._has_agent_for(queue, call):
                    self._finish_overflow(call, OverflowReason.NO_AGENT, now, out)
                elif call.state is not CallState.CONNECTED:
                    # Someone could take the call: look again a grace period later (at least
                    # a second later, so that a grace of 0 does not spin).
                    grace = queue.config.max_wait_no_agent or 0.0
                    self._schedule(now + max(grace, 1.0), _NO_AGENT, key, token)
            self._dispatch(now, out)
        return out

    def next_deadline(self) -> float | None:
        """Return when the next timer fires, or None when none is pending."""
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # -- reading ------------------------------------------------------------------------------

    def call(self, call_id: str) -> CallView:
        """Return a view of an active call.

        Raises:
            UnknownCall: No active call has this id.
        """
        return self._call_view(self._call(call_id))

    def agent(self, agent_id: str) -> AgentView:
        """Return a view of an agent.

        Raises:
            UnknownAgent: No such agent.
        """
        return self._agent_view(self._agent(agent_id))

    def call_state(self, call_id: str) -> CallState:
        """Return the state of an active call: ``call(call_id).state``, without the view.

        Raises:
            UnknownCall: No active call has this id.
            CallStateError: The call finished.
        """
        return self._call(call_id).state

    def agent_profile(self, agent_id: str) -> Agent:
        """Return the `Agent` an agent last logged in as: ``agent(agent_id).agent``, no view.

        Raises:
            UnknownAgent: No such agent.
        """
        return self._agent(agent_id).agent

    def finished(self, call_id: str) -> CallState | None:
        """Return the terminal state of a recently finished call, or None."""
        return self._finished.get(call_id)

    @property
    def waiting_count(self) -> int:
        """The number of calls waiting in a queue (not ringing)."""
        return sum(len(q.waiting) for q in self._queues.values())

    @property
    def active_count(self) -> int:
        """The number of calls not yet finished."""
        return len(self._calls)

    def snapshot(self) -> RouterSnapshot:
        """Return the whole logical state; equal snapshots mean equal states."""
        timers = sorted(
            (time, _TIMER_NAMES[kind], key)
            for time, _, kind, key, token in self._timers
            if self._timer_live((time, 0, kind, key, token))
        )
        return RouterSnapshot(
            calls=tuple(self._call_view(self._calls[k]) for k in sorted(self._calls)),
            agents=tuple(self._agent_view(self._agents[k]) for k in sorted(self._agents)),
            waiting=tuple(
                (name, tuple(entry[2] for entry in q.waiting))
                for name, q in sorted(self._queues.items())
            ),
            nodes_down=frozenset(self._nodes_down),
            timers=tuple(timers),
        )

    # -- checks (no mutation) -----------------------------------------------------------------

    @staticmethod
    def _check_now(now: float) -> None:
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise InvalidInput(
                f"now: {now!r} is not a time; pass the clock's now() in seconds", field="now"
            )

    def _agent(self, agent_id: str) -> _AgentRec:
        rec = self._agents.get(agent_id) if isinstance(agent_id, str) else None
        if rec is None:
            raise UnknownAgent(
                f"agent {agent_id!r} is not known; log the agent in before sending its events"
            )
        return rec

    def _logged_in(self, agent_id: str, action: str) -> _AgentRec:
        rec = self._agent(agent_id)
        if rec.status is AgentStatus.LOGGED_OUT:
            raise AgentStateError(
                f"cannot {action} agent {agent_id!r}: the agent is logged out; log in first"
            )
        return rec

    def _call(self, call_id: str) -> _CallRec:
        call = self._calls.get(call_id) if isinstance(call_id, str) else None
        if call is None:
            ended = self._finished.get(call_id) if isinstance(call_id, str) else None
            if ended is not None:
                raise CallStateError(
                    f"call {call_id!r} already finished ({ended.value}); drop late events for it"
                )
            raise UnknownCall(f"call {call_id!r} is not known; send the call's arrival first")
        return call

    def _pending_offer(
        self, call_id: str, agent_id: str, now: float, action: str
    ) -> tuple[_CallRec, _AgentRec]:
        call = self._calls.get(call_id)
        rec = self._agent(agent_id)
        if call is None:
            ended = self._finished.get(call_id)
            if ended is None:
                raise UnknownCall(f"call {call_id!r} is not known; cannot {action} it")
            raise OfferNotPending(
                f"cannot {action} call {call_id!r}: it already finished ({ended.value})"
            )
        if call.state is CallState.CONNECTED and call.agent_id == agent_id:
            raise OfferNotPending(
                f"cannot {action} call {call_id!r}: agent {agent_id!r} already accepted it"
            )
        if call.state is not CallState.OFFERED or call.agent_id != agent_id:
            raise OfferNotPending(
                f"cannot {action} call {call_id!r}: it is not being offered to agent "
                f"{agent_id!r} (the offer expired, was withdrawn or went to another agent)"
            )
        if now >= call.deadline:
            raise OfferNotPending(
                f"cannot {action} call {call_id!r}: the offer to agent {agent_id!r} expired "
                f"{now - call.deadline:.3f} s ago"
            )
        return call, rec

    # -- mutation helpers ---------------------------------------------------------------------

    def _close_offer(
        self, call_id: str, agent_id: str, now: float, outcome: OfferOutcome, action: str
    ) -> list[Decision]:
        """End a ringing offer that the adapter reports was not accepted."""
        self._check_now(now)
        call, rec = self._pending_offer(call_id, agent_id, now, action)
        out: list[Decision] = []
        if outcome is OfferOutcome.NO_ANSWER:
            # As when the deadline passes: the platform stops ringing the agent.
            out.append(WithdrawOffer(call_id, agent_id, outcome))
        self._end_offer(call, rec, outcome, now, out)
        self._dispatch(now, out)
        return out

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            config = self._queue_configs.get(name) or attrs.evolve(
                self._config.default_queue, name=name
            )
            queue = _Queue(config, self._key_function(config.strategy))
            self._queues[name] = queue
        return queue

    def _key_function(self, strategy: Strategy) -> Callable[[_AgentRec], float]:
        if strategy is Strategy.LONGEST_IDLE:
            return lambda a: a.idle_since
        if strategy is Strategy.ROUND_ROBIN:
            return lambda a: a.last_offered
        if strategy is Strategy.FEWEST_CALLS:
            return lambda a: a.calls_answered
        if strategy is Strategy.LEAST_TALK_TIME:
            return lambda a: a.talk_time
        rng = self._rng
        return lambda a: rng.random()

    def _index(self, rec: _AgentRec) -> None:
        agent_id = rec.agent.agent_id
        self._by_node.setdefault(rec.agent.node, set()).add(agent_id)
        for name, _ in rec.agent.queues:
            self._queue(name).members.add(agent_id)

    def _unindex(self, rec: _AgentRec) -> None:
        agent_id = rec.agent.agent_id
        self._by_node[rec.agent.node].discard(agent_id)
        for name, _ in rec.agent.queues:
            self._queues[name].members.discard(agent_id)

    def _schedule(self, time: float, kind: int, key: str, token: int) -> None:
        heapq.heappush(self._timers, (time, next(self._seq), kind, key, token))

    def _timer_live(self, timer: _Timer) -> bool:
        _, _, kind, key, token = timer
        if kind == _OFFER_DEADLINE:
            call = self._calls.get(key)
            return call is not None and call.state is CallState.OFFERED and call.offers == token
        if kind == _AGENT_RESUME:
            agent = self._agents.get(key)
            return agent is not None and agent.token == token
        call = self._calls.get(key)
        return call is not None and call.position == token

    def _maybe_enter_pool(self, rec: _AgentRec, now: float) -> None:
        if (
            rec.in_pool
            or rec.status is not AgentStatus.AVAILABLE
            or rec.activity is not AgentActivity.IDLE
            or rec.agent.node in self._nodes_down
        ):
            return
        if rec.paused_until > now:
            # Whatever cancelled the earlier timer (a call in between, a wrap-up), the agent
            # must come back when the pause ends.
            self._arm_resume(rec, rec.paused_until)
            return
        rec.in_pool = True
        version = rec.version
        for name, level in rec.agent.queues:
            queue = self._queues[name]
            heap = queue.pools.get(level)
            if heap is None:
                heap = queue.pools[level] = []
                queue.live[level] = 0
                bisect.insort(queue.levels, level)
            live = queue.live[level] = queue.live[level] + 1
            if len(heap) > 2 * live + 64:
                # Lazy deletion leaves dead entries behind; drop them before they pile up.
                heap[:] = [e for e in heap if self._pool_entry_live(e)]
                heapq.heapify(heap)
            heapq.heappush(heap, (queue.key(rec), rec.position, version, rec.agent.agent_id))
        self._fresh_agents.append(rec)

    def _arm_resume(self, rec: _AgentRec, when: float) -> None:
        rec.token += 1
        self._schedule(when, _AGENT_RESUME, rec.agent.agent_id, rec.token)

    def _pool_entry_live(self, entry: _PoolEntry) -> bool:
        rec = self._agents[entry[3]]
        return rec.in_pool and rec.version == entry[2]

    def _leave_pool(self, rec: _AgentRec) -> None:
        if not rec.in_pool:
            return
        rec.in_pool = False
        rec.version += 1
        for name, level in rec.agent.queues:
            self._queues[name].live[level] -= 1

    def _enqueue(self, call: _CallRec) -> None:
        call.state = CallState.QUEUED
        bisect.insort(self._queues[call.call.queue].waiting, call.wait_key)
        self._fresh_calls.append(call)

    def _unqueue(self, call: _CallRec) -> None:
        waiting = self._queues[call.call.queue].waiting
        key = call.wait_key
        index = bisect.bisect_left(waiting, key)
        del waiting[index]

    def _offer(self, call: _CallRec, rec: _AgentRec, now: float, out: list[Decision]) -> None:
        self._leave_pool(rec)
        self._unqueue(call)
        agent_id = rec.agent.agent_id
        rec.activity = AgentActivity.RESERVED
        rec.call_id = call.call.call_id
        rec.last_offered = next(self._offers)
        call.state = CallState.OFFERED
        call.agent_id = agent_id
        call.offers += 1
        call.deadline = now + self._config.offer_timeout
        self._schedule(call.deadline, _OFFER_DEADLINE, call.call.call_id, call.offers)
        out.append(OfferCall(call.call.call_id, agent_id, call.deadline, call.offers))

    def _end_offer(
        self,
        call: _CallRec,
        rec: _AgentRec,
        outcome: OfferOutcome,
        now: float,
        out: list[Decision],
        *,
        requeue: bool = True,
        penalize: bool = True,
    ) -> None:
        """Close a ringing offer that was not accepted, then deal with agent and call."""
        cfg = self._config
        rec.activity = AgentActivity.IDLE
        rec.call_id = None
        call.agent_id = None
        agent_id = rec.agent.agent_id
        delay, limit, count = 0.0, None, 0
        if penalize:
            if outcome is OfferOutcome.REJECTED:
                rec.rejects += 1
                delay, limit, count = cfg.reject_delay, cfg.max_rejects, rec.rejects
            elif outcome is OfferOutcome.NO_ANSWER:
                rec.no_answers += 1
                delay, limit, count = cfg.no_answer_delay, cfg.max_no_answer, rec.no_answers
            elif outcome is OfferOutcome.UNREACHABLE:
                rec.unreachables += 1
                delay, limit, count = cfg.unreachable_delay, cfg.max_unreachable, rec.unreachables
        if limit is not None and count >= limit:
            rec.status = AgentStatus.NOT_READY
            rec.reason = outcome.value.replace("_", " ")
            out.append(AgentNotReady(agent_id, rec.reason))
        elif delay > 0:
            rec.paused_until = now + delay
            self._arm_resume(rec, rec.paused_until)
            out.append(AgentPaused(agent_id, rec.paused_until, outcome))
        else:
            self._maybe_enter_pool(rec, now)
        if not requeue:
            return
        queue = self._queues[call.call.queue].config
        if outcome is OfferOutcome.REJECTED and not queue.reassignable:
            if call.excluded is None:
                call.excluded = set()
            call.excluded.add(agent_id)
        if queue.max_offers is not None and call.offers >= queue.max_offers:
            self._finish_overflow(call, OverflowReason.MAX_OFFERS, now, out)
        elif queue.max_wait is not None and now >= call.call.arrived + queue.max_wait:
            self._finish_overflow(call, OverflowReason.MAX_WAIT, now, out)
        else:
            self._enqueue(call)
            out.append(CallRedirected(call.call.call_id, agent_id, outcome))

    def _set_away(
        self,
        rec: _AgentRec,
        status: AgentStatus,
        reason: str,
        now: float,
        out: list[Decision],
    ) -> None:
        rec.status = status
        rec.reason = reason
        self._leave_pool(rec)
        if rec.activity is AgentActivity.RESERVED:
            call = self._calls[rec.call_id]  # type: ignore[index]
            agent_id = rec.agent.agent_id
            out.append(WithdrawOffer(call.call.call_id, agent_id, OfferOutcome.CANCELLED))
            self._end_offer(call, rec, OfferOutcome.CANCELLED, now, out)
        self._dispatch(now, out)

    def _finish_connected(
        self, call: _CallRec, now: float, out: list[Decision], *, by_caller: bool
    ) -> None:
        rec = self._agents[call.agent_id]  # type: ignore[index]
        talk = max(0.0, float(now - call.connected_at))
        rec.talk_time += talk
        rec.idle_since = now
        rec.call_id = None
        wrap_up = self._config.wrap_up_time
        if wrap_up > 0:
            rec.activity = AgentActivity.WRAP_UP
            self._arm_resume(rec, now + wrap_up)
        else:
            self._to_idle(rec, now)
        self._finish(call, CallState.ENDED)
        out.append(CallEnded(call.call.call_id, rec.agent.agent_id, talk, by_caller))

    def _to_idle(self, rec: _AgentRec, now: float) -> None:
        rec.activity = AgentActivity.IDLE
        rec.token += 1  # a pending wrap-up timer no longer applies
        self._maybe_enter_pool(rec, now)

    def _finish_overflow(
        self, call: _CallRec, reason: OverflowReason, now: float, out: list[Decision]
    ) -> None:
        if call.state is CallState.QUEUED:
            self._unqueue(call)
        self._finish(call, CallState.OVERFLOWED)
        out.append(CallOverflowed(call.call.call_id, reason, now - call.call.arrived))

    def _finish(self, call: _CallRec, state: CallState) -> None:
        call.state = state
        call_id = call.call.call_id
        del self._calls[call_id]
        finished = self._finished
        finished[call_id] = state
        if len(finished) > self._config.remember_finished:
            finished.popitem(last=False)

    def _has_agent_for(self, queue: _Queue, call: _CallRec) -> bool:
        """Whether any logged-in agent on a linked node could ever take the call."""
        for agent_id in queue.members:
            rec = self._agents[agent_id]
            if (
                rec.status is not AgentStatus.LOGGED_OUT
                and rec.agent.node not in self._nodes_down
                and self._can_take(rec, call)
            ):
                return True
        return False

    @staticmethod
    def _can_take(rec: _AgentRec, call: _CallRec) -> bool:
        excluded = call.excluded
        return call.call.skills <= rec.agent.skills and (
            excluded is None or rec.agent.agent_id not in excluded
        )

    # -- matching -----------------------------------------------------------------------------

    def _dispatch(self, now: float, out: list[Decision]) -> None:
        """Match fresh agents and fresh calls until no waiting call has an eligible agent."""
        agents, calls = self._fresh_agents, self._fresh_calls
        while agents or calls:
            while agents:
                rec = agents[-1]
                call = self._best_call_for(rec) if rec.in_pool else None
                if call is None:
                    agents.pop()
                    continue
                # The call at the head of the line picks among all eligible agents by the
                # queue's strategy, so that several agents freed at once are chosen fairly.
                self._offer(call, self._best_agent_for(call) or rec, now, out)
            while calls:
                call = calls.pop()
                if call.state is CallState.QUEUED and call.call.call_id in self._calls:
                    agent = self._best_agent_for(call)
                    if agent is not None:
                        self._offer(call, agent, now, out)

    def _best_call_for(self, rec: _AgentRec) -> _CallRec | None:
        best: _CallRec | None = None
        best_key: _WaitEntry | None = None
        calls = self._calls
        for name, _ in rec.agent.queues:
            for entry in self._queues[name].waiting:
                if best_key is not None and entry >= best_key:
                    break
                call = calls[entry[2]]
                if self._can_take(rec, call):
                    best, best_key = call, entry
                    break
        return best

    def _best_agent_for(self, call: _CallRec) -> _AgentRec | None:
        queue = self._queues[call.call.queue]
        agents = self._agents
        for level in queue.levels:
            heap = queue.pools[level]
            aside: list[_PoolEntry] = []
            found: _AgentRec | None = None
            while heap:
                entry = heap[0]
                rec = agents[entry[3]]
                if not rec.in_pool or rec.version != entry[2]:
                    heapq.heappop(heap)
                elif self._can_take(rec, call):
                    found = rec
                    break
                else:
                    aside.append(heapq.heappop(heap))
            for entry in aside:
                heapq.heappush(heap, entry)
            if found is not None:
                return found
        return None

    # -- views --------------------------------------------------------------------------------

    def _call_view(self, call: _CallRec) -> CallView:
        return CallView(
            call=call.call,
            state=call.state,
            agent_id=call.agent_id,
            offers=call.offers,
            deadline=call.deadline if call.state is CallState.OFFERED else None,
            excluded=frozenset(call.excluded or ()),
        )

    def _agent_view(self, rec: _AgentRec) -> AgentView:
        return AgentView(
            agent=rec.agent,
            status=rec.status,
            reason=rec.reason,
            activity=rec.activity,
            call_id=rec.call_id,
            paused_until=rec.paused_until,
            eligible=rec.in_pool,
            calls_answered=rec.calls_answered,
            talk_time=rec.talk_time,
            rejects=rec.rejects,
            no_answers=rec.no_answers,
            unreachables=rec.unreachables,
        )
