"""The routing vocabulary: states, outcomes, settings, and the decisions the router returns.

Every router operation returns a list of decisions. Two kinds are orders for the async shell
(`OfferCall`, `WithdrawOffer`); the rest report what happened, for events, journal entries
and metrics. The shell executes; it never decides.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, TypeAlias

import attrs

from .._errors import InvalidInput
from .._model import Agent, Call, check_identifier
from .._validators import as_seconds

__all__ = [
    "AgentActivity",
    "AgentNotReady",
    "AgentPaused",
    "AgentStatus",
    "AgentView",
    "CallAbandoned",
    "CallConnected",
    "CallEnded",
    "CallOverflowed",
    "CallRedirected",
    "CallState",
    "CallView",
    "Decision",
    "OfferCall",
    "OfferOutcome",
    "OverflowReason",
    "QueueConfig",
    "RouterConfig",
    "RouterSnapshot",
    "Strategy",
    "WithdrawOffer",
]


class CallState(enum.Enum):
    """Where a call is in its life: ``queued -> offered -> connected -> ended``."""

    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTED = "connected"
    ENDED = "ended"
    ABANDONED = "abandoned"
    OVERFLOWED = "overflowed"

    @property
    def terminal(self) -> bool:
        """True for the states a call never leaves."""
        return self in _TERMINAL


_TERMINAL = frozenset({CallState.ENDED, CallState.ABANDONED, CallState.OVERFLOWED})


class AgentStatus(enum.Enum):
    """What the agent chose: logged out, available, or not ready (with a reason)."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    NOT_READY = "not_ready"


class AgentActivity(enum.Enum):
    """What the agent is doing: idle, reserved by an offer, on a call, or in wrap-up."""

    IDLE = "idle"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


class OfferOutcome(enum.Enum):
    """How an offer ended. Each has its own delay and counter (see `RouterConfig`)."""

    ACCEPTED = "accepted"
    #: The agent declined: paused `reject_delay`, counted in `rejects`, not a miss.
    REJECTED = "rejected"
    #: The offer timed out: paused `no_answer_delay`, counted toward `max_no_answer`.
    NO_ANSWER = "no_answer"
    #: The agent's channel failed, or the agent's node lost its link.
    UNREACHABLE = "unreachable"
    #: The caller hung up while the offer was ringing. No penalty.
    WITHDRAWN = "withdrawn"
    #: The agent went not ready or logged out during the offer. No penalty.
    CANCELLED = "cancelled"


class OverflowReason(enum.Enum):
    """Why a call left the queue without an agent."""

    MAX_WAIT = "max_wait"
    NO_AGENT = "no_agent"
    MAX_OFFERS = "max_offers"


class Strategy(enum.Enum):
    """How the router picks among the eligible agents of a tier level.

    Every strategy orders by tier level first (level 1 before level 2), as FreeSWITCH's
    mod_callcenter does, then by its own key, then by login order.
    """

    #: The agent whose last call ended longest ago, or who became ready first.
    LONGEST_IDLE = "longest-idle"
    #: The agent offered a call least recently.
    ROUND_ROBIN = "round-robin"
    #: The agent who answered the fewest calls.
    FEWEST_CALLS = "fewest-calls"
    #: The agent with the least talk time.
    LEAST_TALK_TIME = "least-talk-time"
    #: A random eligible agent, from the router's seeded generator.
    RANDOM = "random"


def _optional_seconds(value: float | timedelta | None) -> float | None:
    return None if value is None else as_seconds(value)


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (math.isnan(value) or value < 0 or math.isinf(value)):
        raise InvalidInput(
            f"{attribute.name}: {value!r} is not allowed; give a finite number of seconds >= 0",
            field=attribute.name,
        )


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    _non_negative(instance, attribute, value)
    if value == 0:
        raise InvalidInput(f"{attribute.name}: must be more than 0 seconds", field=attribute.name)


def _optional_count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(
            f"{attribute.name}: {value!r} is not allowed; give a whole number >= 1, or None "
            "for no limit",
            field=attribute.name,
        )


def _count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        raise InvalidInput(f"{attribute.name}: give a whole number >= 1", field=attribute.name)
    _optional_count(instance, attribute, value)


def _to_strategy(value: Strategy | str) -> Strategy:
    if isinstance(value, Strategy):
        return value
    try:
        return Strategy(value)
    except ValueError:
        names = ", ".join(s.value for s in Strategy)
        raise InvalidInput(
            f"strategy: {value!r} is not a strategy; use one of {names}", field="strategy"
        ) from None


def _identifier(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_identifier(attribute.name, value)


@attrs.frozen
class QueueConfig:
    """Settings of one queue.

    Attributes:
        name: The queue's id.
        strategy: How agents are picked (a `Strategy` or its name, e.g. ``"round-robin"``).
        max_wait: Seconds a call may wait before it overflows (None: no limit). A call is
            never taken from an agent whose offer is ringing; it overflows when that offer
            ends without an accept.
        max_wait_no_agent: Seconds a call may wait while no logged-in agent of the queue
            (ready or not ready, on a linked node, with the call's skills) exists; 0 overflows
            at once (None: no limit).
        max_offers: Offers a call may get before it overflows (None: no limit).
        reassignable: Whether a call may be offered again to an agent who rejected it.
    """

    name: str = attrs.field(validator=_identifier)
    strategy: Strategy = attrs.field(default=Strategy.LONGEST_IDLE, converter=_to_strategy)
    max_wait: float | None = attrs.field(
        default=None, converter=_optional_seconds, validator=_non_negative
    )
    max_wait_no_agent: float | None = attrs.field(
        default=None, converter=_optional_seconds, validator=_non_negative
    )
    max_offers: int | None = attrs.field(default=None, validator=_optional_count)
    reassignable: bool = True


@attrs.frozen
class RouterConfig:
    """Router-wide settings, with the defaults a contact center would expect.

    Durations are seconds (a float or a `timedelta`).

    Attributes:
        offer_timeout: How long an offer rings before it counts as no answer.
        wrap_up_time: After-call time before an agent is offered the next call. Most CCaaS
            platforms run their own after-call work, so the default is none.
        reject_delay: Pause after an agent rejects an offer.
        no_answer_delay: Pause after an offer times out.
        unreachable_delay: Pause after the agent's channel fails.
        max_no_answer: Consecutive timed-out offers after which the agent is set not ready
            with reason ``"no answer"`` (None: never). An accept or a manual ready resets it.
        max_rejects: The same for rejections (None, the default: rejecting is the agent's
            right and never sets them not ready).
        max_unreachable: The same for channel failures (reason ``"unreachable"``).
        queues: Settings per queue; a call to a queue not listed here gets `default_queue`'s
            settings under its own name.
        default_queue: The template for queues not listed.
        seed: Seed of the generator behind the random strategy.
        remember_finished: How many finished call ids are kept to recognise late events
            (an accept after the caller hung up) and refuse reused ids.
    """

    offer_timeout: float = attrs.field(default=20.0, converter=as_seconds, validator=_positive)
    wrap_up_time: float = attrs.field(default=0.0, converter=as_seconds, validator=_non_negative)
    reject_delay: float = attrs.field(default=5.0, converter=as_seconds, validator=_non_negative)
    no_answer_delay: float = attrs.field(
        default=10.0, converter=as_seconds, validator=_non_negative
    )
    unreachable_delay: float = attrs.field(
        default=5.0, converter=as_seconds, validator=_non_negative
    )
    max_no_answer: int | None = attrs.field(default=3, validator=_optional_count)
    max_rejects: int | None = attrs.field(default=None, validator=_optional_count)
    max_unreachable: int | None = attrs.field(default=3, validator=_optional_count)
    queues: tuple[QueueConfig, ...] = attrs.field(default=(), converter=tuple)
    default_queue: QueueConfig = QueueConfig("default")
    seed: int = 0
    remember_finished: int = attrs.field(default=10_000, validator=_count)

    @queues.validator
    def _check_queues(self, attribute: attrs.Attribute[Any], value: Iterable[QueueConfig]) -> None:
        names = [q.name for q in value]
        if len(names) != len(set(names)):
            raise InvalidInput("queues: each queue may be configured once", field="queues")


# -- decisions ----------------------------------------------------------------------------------


@attrs.frozen
class OfferCall:
    """Order: offer `call_id` to `agent_id`; it rings until `deadline` (router time)."""

    call_id: str
    agent_id: str
    deadline: float
    attempt: int


@attrs.frozen
class WithdrawOffer:
    """Order: stop ringing `agent_id` for `call_id`, because of `outcome`."""

    call_id: str
    agent_id: str
    outcome: OfferOutcome


@attrs.frozen
class CallConnected:
    """The agent accepted: the call is connected."""

    call_id: str
    agent_id: str


@attrs.frozen
class CallRedirected:
    """The offer to `agent_id` ended with `outcome`; the call is back in line, in its place."""

    call_id: str
    agent_id: str
    outcome: OfferOutcome


@attrs.frozen
class CallEnded:
    """A connected call ended (`by_caller` when the caller hung up)."""

    call_id: str
    agent_id: str
    talk_time: float
    by_caller: bool


@attrs.frozen
class CallAbandoned:
    """The caller hung up before an agent took the call (`agent_id`: who was being offered)."""

    call_id: str
    waited: float
    agent_id: str | None


@attrs.frozen
class CallOverflowed:
    """The call left the queue without an agent; the adapter routes it elsewhere."""

    call_id: str
    reason: OverflowReason
    waited: float


@attrs.frozen
class AgentPaused:
    """The agent is not offered calls until `until`, after an offer ended with `outcome`."""

    agent_id: str
    until: float
    outcome: OfferOutcome


@attrs.frozen
class AgentNotReady:
    """The router set the agent not ready, e.g. after `max_no_answer` missed offers."""

    agent_id: str
    reason: str


Decision: TypeAlias = (
    OfferCall
    | WithdrawOffer
    | CallConnected
    | CallRedirected
    | CallEnded
    | CallAbandoned
    | CallOverflowed
    | AgentPaused
    | AgentNotReady
)


# -- views --------------------------------------------------------------------------------------


@attrs.frozen
class CallView:
    """A read-only picture of one call in the router."""

    call: Call
    state: CallState
    agent_id: str | None
    offers: int
    deadline: float | None
    excluded: frozenset[str]


@attrs.frozen
class AgentView:
    """A read-only picture of one agent in the router."""

    agent: Agent
    status: AgentStatus
    reason: str
    activity: AgentActivity
    call_id: str | None
    paused_until: float
    eligible: bool
    calls_answered: int
    talk_time: float
    rejects: int
    no_answers: int
    unreachables: int


@attrs.frozen
class RouterSnapshot:
    """The router's whole logical state, comparable with ``==``.

    Attributes:
        calls: Every active call, by id.
        agents: Every known agent, by id.
        waiting: Per queue, the ids of the queued calls in the order they will be served.
        nodes_down: Nodes whose link is down.
        timers: Pending timers as ``(time, kind, id)``.
    """

    calls: tuple[CallView, ...]
    agents: tuple[AgentView, ...]
    waiting: tuple[tuple[str, tuple[str, ...]], ...]
    nodes_down: frozenset[str]
    timers: tuple[tuple[float, str, str], ...]
