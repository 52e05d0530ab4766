"""Scripted agents: an `AgentChannel` whose agents answer offers by seeded chance, on a clock.

Each offer gets its own random generator, seeded from the run's seed, the agent, the call and
the attempt, so an agent's answer to a given offer does not depend on the order in which the
event loop happened to run things. Everything waits on the injected clock: with a
`ManualClock` a test moves time by hand, with a scaled clock a simulation runs faster than
real time.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .._clock import Clock
from .._errors import CallResilienceError, InvalidInput
from .._model import Agent
from ..routing import AgentNotReady, OfferOutcome

if TYPE_CHECKING:
    from ..engine import Engine, EngineEvent, Notice, Offer

__all__ = ["AgentAction", "AgentBehaviour", "Distribution", "ScriptedAgents"]


class _Kind(enum.Enum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    EXPONENTIAL = "exponential"


def _finite(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise InvalidInput(f"{attribute.name}: give a finite number >= 0", field=attribute.name)


@attrs.frozen
class Distribution:
    """A duration in seconds, drawn at random: fixed, uniform, or exponential.

    Build one with `fixed`, `uniform` or `exponential`.

    Attributes:
        kind: ``"fixed"``, ``"uniform"`` or ``"exponential"``.
        low: The fixed value, the uniform lower bound, or the exponential's minimum.
        high: The uniform upper bound, or the exponential's cap (0: none).
        mean: The exponential's mean above `low`.
    """

    kind: str = attrs.field(validator=attrs.validators.in_([k.value for k in _Kind]))
    low: float = attrs.field(default=0.0, validator=_finite)
    high: float = attrs.field(default=0.0, validator=_finite)
    mean: float = attrs.field(default=0.0, validator=_finite)

    @classmethod
    def fixed(cls, seconds: float) -> Distribution:
        """Always `seconds`."""
        return cls("fixed", seconds, seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Distribution:
        """Uniform between `low` and `high` seconds."""
        if high < low:
            raise InvalidInput("high: give a value >= low", field="high")
        return cls("uniform", low, high)

    @classmethod
    def exponential(cls, mean: float, *, minimum: float = 0.0, cap: float = 0.0) -> Distribution:
        """`minimum` plus an exponential of `mean` seconds, at most `cap` (0: no cap)."""
        if cap and cap < minimum:
            raise InvalidInput("cap: give a value >= minimum", field="cap")
        return cls("exponential", minimum, cap, mean)

    def sample(self, rng: random.Random) -> float:
        """Draw one duration."""
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        value = self.low + (rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0)
        return min(value, self.high) if self.high else value

    def average(self) -> float:
        """The expected value (ignoring the cap)."""
        if self.kind == "uniform":
            return (self.low + self.high) / 2
        return self.low + (self.mean if self.kind == "exponential" else 0.0)


_RING = Distribution.uniform(1.0, 5.0)
_TALK = Distribution.exponential(25.0, minimum=5.0, cap=120.0)
_WRAP_UP = Distribution.uniform(2.0, 8.0)
_ACKNOWLEDGE = Distribution.uniform(2.0, 10.0)
_AWAY = Distribution.uniform(15.0, 30.0)


def _probability(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise InvalidInput(f"{attribute.name}: give a probability in [0, 1]", field=attribute.name)


@attrs.frozen
class AgentBehaviour:
    """How a scripted agent answers, talks and wraps up.

    The chance of letting an offer ring out is what `accept` and `reject` leave over.

    Attributes:
        accept: The chance of accepting an offer.
        reject: The chance of rejecting it.
        ring: How long the agent lets it ring before accepting or rejecting.
        talk: How long an accepted call lasts.
        wrap_up: After-call work before `finish_wrap_up` (it takes effect only when the
            router's `wrap_up_time` is longer).
        acknowledge: How long the agent takes to acknowledge a mode notice.
        away: How long an agent the engine set not ready stays away before going ready
            again (None: stays not ready).
    """

    accept: float = attrs.field(default=0.8, validator=_probability)
    reject: float = attrs.field(default=0.1, validator=_probability)
    ring: Distribution = _RING
    talk: Distribution = _TALK
    wrap_up: Distribution = _WRAP_UP
    acknowledge: Distribution = _ACKNOWLEDGE
    away: Distribution | None = _AWAY

    def __attrs_post_init__(self) -> None:
        if self.accept + self.reject > 1.0 + 1e-9:
            raise InvalidInput("accept + reject: give at most 1 in total", field="reject")

    @property
    def no_answer(self) -> float:
        """The chance of letting an offer ring out."""
        return max(0.0, 1.0 - self.accept - self.reject)


@attrs.frozen
class AgentAction:
    """Something a scripted agent did, for observers: `kind` at `at` (the clock's `now()`).

    Kinds: ``"offered"`` (the channel was called), ``"accept"``, ``"reject"``,
    ``"no_answer"`` (decided to let it ring), ``"too_late"`` (the engine refused the
    answer: the offer was over), ``"end"``, ``"wrap_up_done"``, ``"acknowledge"``,
    ``"ready"`` (back after being set not ready), ``"withdrawn"``, ``"notified"``.
    """

    kind: str
    agent_id: str
    call_id: str | None
    at: float
    detail: str = ""


class ScriptedAgents:
    """An `AgentChannel` whose agents answer offers by chance, on a clock.

    Args:
        clock: The engine's clock; every delay waits on it.
        behaviour: How every agent behaves, unless `behaviours` names it.
        seed: Seeds every decision and duration.
        behaviours: Behaviour per agent id.
        observer: Called with every `AgentAction` (exceptions propagate: keep it simple).

    Call `bind(engine)` before the engine offers anything: the agents answer through it, and
    learn from its events when they were set not ready. `aclose()` cancels what is pending.
    """

    def __init__(
        self,
        clock: Clock,
        behaviour: AgentBehaviour | None = None,
        *,
        seed: int = 0,
        behaviours: Mapping[str, AgentBehaviour] | None = None,
        observer: Callable[[AgentAction], object] | None = None,
    ) -> None:
        self._clock = clock
        self._behaviour = behaviour or AgentBehaviour()
        self._behaviours = dict(behaviours or {})
        self._seed = seed
        self._observer = observer
        self._engine: Engine | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._ringing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._actions: list[AgentAction] = []
        self._aways: dict[str, int] = {}
        self._busy = 0

    def __repr__(self) -> str:
        return f"<ScriptedAgents seed={self._seed} pending={len(self._tasks)}>"

    @property
    def actions(self) -> tuple[AgentAction, ...]:
        """Everything the agents did so far, in order."""
        return tuple(self._actions)

    @property
    def pending(self) -> int:
        """How many scripted actions are still to come (rings, talks, wrap-ups...)."""
        return len(self._tasks)

    @property
    def busy(self) -> int:
        """How many engine calls the agents are making right now.

        An engine call returns once its journal entries are durable, so when this is 0 (and
        nothing else calls the engine) every event the agents caused is in the journal.
        """
        return self._busy

    def behaviour(self, agent_id: str) -> AgentBehaviour:
        """The behaviour of one agent."""
        return self._behaviours.get(agent_id, self._behaviour)

    def bind(self, engine: Engine) -> None:
        """Answer through `engine`, and watch its events for agents it sets not ready."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._engine = engine
        self._unsubscribe = engine.subscribe(self._on_event)

    async def aclose(self) -> None:
        """Cancel every pending action and stop watching the engine."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the channel -------------------------------------------------------------------------

    async def offer(self, agent: Agent, offer: Offer) -> None:
        """Ring the agent: it answers, rejects or lets it ring, after a ring delay."""
        call_id = offer.call.call_id
        self._record("offered", agent.agent_id, call_id, f"attempt {offer.attempt}")
        rng = self._rng(agent.agent_id, call_id, offer.attempt)
        behaviour = self.behaviour(agent.agent_id)
        roll = rng.random()
        if roll < behaviour.accept:
            choice = "accept"
        elif roll < behaviour.accept + behaviour.reject:
            choice = "reject"
        else:
            self._record("no_answer", agent.agent_id, call_id)
            return
        delay = behaviour.ring.sample(rng)
        key = (agent.agent_id, call_id)
        self._ringing[key] = self._spawn(self._answer(choice, agent.agent_id, call_id, delay, rng))

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        """Stop ringing: the agent will not answer this offer."""
        task = self._ringing.pop((agent.agent_id, call_id), None)
        if task is not None:
            task.cancel()
        self._record("withdrawn", agent.agent_id, call_id, reason.value)

    async def notify(self, agent: Agent, notice: Notice) -> None:
        """Show a notice; the agent acknowledges a mode notice after a while."""
        self._record("notified", agent.agent_id, None, notice.text)
        notice_id = notice.data.get("notice_id")
        if notice.kind != "mode" or not isinstance(notice_id, int):
            return
        rng = self._rng(agent.agent_id, "notice", notice_id)
        delay = self.behaviour(agent.agent_id).acknowledge.sample(rng)
        self._spawn(self._acknowledge(agent.agent_id, notice_id, delay))

    async def transfer(
        self, agent: Agent, call_id: str, target: str, interaction_sys_id: str
    ) -> None:
        """Scripted agents never ask for transfers; one that arrives anyway is recorded."""
        self._record("transfer", agent.agent_id, call_id, target)

    # -- scripted actions --------------------------------------------------------------------

    async def _answer(
        self, choice: str, agent_id: str, call_id: str, delay: float, rng: random.Random
    ) -> None:
        await self._clock.sleep(delay)
        self._ringing.pop((agent_id, call_id), None)
        engine = self._bound()
        try:
            if choice == "reject":
                await self._call(engine.reject(call_id, agent_id, reason="scripted"))
            else:
                await self._call(engine.accept(call_id, agent_id))
        except CallResilienceError as error:
            self._record("too_late", agent_id, call_id, type(error).__name__)
            return
        self._record(choice, agent_id, call_id)
        if choice == "accept":
            await self._talk(agent_id, call_id, rng)

    async def _talk(self, agent_id: str, call_id: str, rng: random.Random) -> None:
        behaviour = self.behaviour(agent_id)
        talk, wrap_up = behaviour.talk.sample(rng), behaviour.wrap_up.sample(rng)
        await self._clock.sleep(talk)
        engine = self._bound()
        try:
            await self._call(engine.end(call_id))
        except CallResilienceError as error:  # the caller hung up first
            self._record("too_late", agent_id, call_id, type(error).__name__)
            return
        self._record("end", agent_id, call_id)
        await self._clock.sleep(wrap_up)
        try:
            await self._call(engine.finish_wrap_up(agent_id))
        except CallResilienceError:
            return  # the router's own wrap-up time ran out first (or there is none)
        self._record("wrap_up_done", agent_id, None)

    async def _acknowledge(self, agent_id: str, notice_id: int, delay: float) -> None:
        await self._clock.sleep(delay)
        try:
            await self._call(self._bound().acknowledge(agent_id, notice_id))
        except CallResilienceError as error:  # logged out, or acknowledged already
            self._record("too_late", agent_id, None, type(error).__name__)
            return
        self._record("acknowledge", agent_id, None, f"notice {notice_id}")

    async def _back(self, agent_id: str, delay: float) -> None:
        await self._clock.sleep(delay)
        try:
            await self._call(self._bound().ready(agent_id))
        except CallResilienceError as error:
            self._record("too_late", agent_id, None, type(error).__name__)
            return
        self._record("ready", agent_id, None)

    def _on_event(self, event: EngineEvent) -> None:
        if not isinstance(event, AgentNotReady):
            return
        away = self.behaviour(event.agent_id).away
        if away is None:
            return
        count = self._aways[event.agent_id] = self._aways.get(event.agent_id, 0) + 1
        rng = self._rng(event.agent_id, "away", count)
        self._spawn(self._back(event.agent_id, away.sample(rng)))

    # -- inside ------------------------------------------------------------------------------

    async def _call(self, work: Awaitable[object]) -> None:
        self._busy += 1
        try:
            await work
        finally:
            self._busy -= 1

    def _bound(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("ScriptedAgents: call bind(engine) before the engine offers calls")
        return self._engine

    def _rng(self, agent_id: str, what: str, number: int) -> random.Random:
        return random.Random(f"{self._seed}:{agent_id}:{what}:{number}")

    def _record(self, kind: str, agent_id: str, call_id: str | None, detail: str = "") -> None:
        action = AgentAction(kind, agent_id, call_id, self._clock.now(), detail)
        self._actions.append(action)
        if self._observer is not None:
            self._observer(action)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
