"""The engine: the one object an adapter talks to.

It joins the router (who is offered what), the journal and its drainer (what ServiceNow must
hold), and the adapter's `AgentChannel` (how agents are reached). The one rule holds by
construction: between "a call arrived" and "an agent was offered it", or "accepted" and
"connected", the engine does routing in memory and appends to the local journal; it never
awaits a request to the instance. ServiceNow is written by the drainer, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Final, TypeAlias

import attrs
import httpx

from .._clock import Clock, SystemClock, sleep_or_wake, wait_within
from .._errors import (
    CallStateError,
    InteractionRequired,
    InvalidInput,
    ItsmUnavailable,
    RoutingError,
    TransferTargetUnavailable,
)
from .._model import Agent, Call, check_identifier
from ..health import ComponentStatus, Incident, Mode, Severity
from ..journal import (
    Drainer,
    EntryState,
    Intent,
    JournalStore,
    MemoryJournal,
    RecordWritten,
    SqliteJournal,
)
from ..resilience import BreakerState, BreakerStateChanged
from ..routing import (
    CallAbandoned,
    CallConnected,
    CallEnded,
    CallOverflowed,
    CallRedirected,
    CallState,
    Decision,
    OfferCall,
    OfferOutcome,
    Router,
    WithdrawOffer,
)
from ..servicenow import ServiceNowClient
from ._continuity import Continuity, NodeCheck
from ._records import INTERACTION, CallRecords
from ._types import (
    AgentChannel,
    CallOffered,
    EngineConfig,
    EngineEvent,
    InteractionCreated,
    Offer,
    OfferEnded,
    OfferRejected,
    OfferTimedOut,
)

__all__ = ["Engine"]

log = logging.getLogger("callresilience.engine")

_TARGET_RE: Final = re.compile(r"[A-Za-z0-9._:@+-]{1,128}")
_REMEMBERED_INTERACTIONS: Final = 10_000


@attrs.frozen
class _OfferClosed:
    """Among the router's decisions: the adapter reported that this offer ended.

    A rejected offer, or one whose channel failed, has no `WithdrawOffer` to tell that it
    ended, so the engine marks its end itself: to report the outcome if the call overflows
    instead of going back in line.
    """

    call_id: str
    agent_id: str
    outcome: OfferOutcome


#: What `_carry_out` executes: the router's decisions and the engine's marks among them.
_Step: TypeAlias = Decision | _OfferClosed


@attrs.define(eq=False)
class _CallLog:
    """What the engine journaled for a call so far."""

    call: Call
    agent_id: str | None = None
    answered_at: float | None = None
    phone_log: bool = False
    interaction: bool = False
    group: str | None = None  # of the first agent the call's records were made for
    on_hold: bool = False
    holds: int = 0
    attempt: int = 0  # of the latest offer


class Engine:
    """Offer every call whatever the state of ServiceNow; journal the records it must hold.

    Args:
        config: The instance, credentials, journal file and settings.
        channel: The adapter's way to reach agents.
        clock: Where time comes from (default: the system clock).
        transport: An httpx transport for the ServiceNow client (e.g. the FakeServiceNow's).
        store: A journal store to use instead of the one `config.journal` names.
        rng: The random source of the drainer's jitter (seed it for repeatable runs).

    Use it as an async context manager: entering starts the drainer and the timers, leaving
    stops them (the journal keeps whatever is not written yet).
    """

    def __init__(
        self,
        config: EngineConfig,
        channel: AgentChannel,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        store: JournalStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._channel = channel
        self._clock = clock or SystemClock()
        self._router = Router(config.router)
        self._records = CallRecords(config.records)
        if store is None and config.journal is not None:
            config.journal.parent.mkdir(parents=True, exist_ok=True)
            store = SqliteJournal(config.journal)
        elif store is None:
            store = MemoryJournal()
        self._store = store
        self._client = ServiceNowClient(
            config.instance,
            auth=config.auth,
            transport=transport,
            clock=self._clock,
            read_timeout=config.read_timeout,
            on_endpoint_change=self._endpoint_changed,
        )
        self._drainer = Drainer(
            store,
            self._client,
            config.drainer,
            clock=self._clock,
            on_event=self._emit_drained,
            rng=rng,
        )
        self._calls: dict[str, _CallLog] = {}
        # Oldest first; an OrderedDict drops its oldest in constant time (see the router's).
        self._interactions: OrderedDict[str, str] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}
        # Replaced, never changed in place: an event is published to the subscribers there
        # were when its publishing began, whoever subscribes or unsubscribes meanwhile.
        self._subscribers: tuple[Callable[[EngineEvent], object], ...] = ()
        # Events of the decisions being carried out, held until their intents are journaled.
        self._held_events: list[list[Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer_wake = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        self._failback_task: asyncio.Task[None] | None = None
        self._continuity = Continuity(
            config,
            clock=self._clock,
            router=self._router,
            channel=channel,
            drainer=self._drainer,
            client=self._client,
            emit=self._emit,
            spawn=self._spawn,
            wake=self._timer_wake.set,
        )

    def __repr__(self) -> str:
        return (
            f"<Engine instance={list(self._config.instance)!r} calls={len(self._calls)} "
            f"tasks={len(self._tasks)}>"
        )

    # -- life --------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self._client.__aenter__()
        await self._drainer.__aenter__()
        self._timer_task = asyncio.create_task(self._timers(), name="callresilience-timers")
        if len(self._client.endpoints) > 1:
            self._failback_task = asyncio.create_task(
                self._continuity.failback_loop(), name="callresilience-failback"
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop timers, channel calls and the drainer; close the client and the journal."""
        tasks = [t for t in (self._timer_task, self._failback_task, *self._tasks) if t is not None]
        tasks += self._continuity.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._drainer.aclose()
        await self._client.aclose()
        await self._store.close()

    def now(self) -> float:
        """The engine clock's monotonic time: what `Call.arrived` and offer timers are on."""
        return self._clock.now()

    @property
    def router(self) -> Router:
        """The routing core, for reading views and snapshots (feed events through the engine)."""
        return self._router

    @property
    def journal(self) -> JournalStore:
        """The journal, for the operator API (counts, dead entries, replay)."""
        return self._store

    @property
    def drainer(self) -> Drainer:
        """The drainer (its breaker and bucket, for status pages)."""
        return self._drainer

    # -- events out --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[EngineEvent], object]) -> Callable[[], None]:
        """Call `callback` with every event; return a function that unsubscribes it.

        Raises:
            InvalidInput: `callback` is not callable.
        """
        if not callable(callback):
            raise InvalidInput("callback: give a function that takes one event", field="callback")
        self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            subscribers = list(self._subscribers)
            subscribers.remove(callback)  # ValueError when already unsubscribed
            self._subscribers = tuple(subscribers)

        return unsubscribe

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Yield every event from now on, until the caller stops iterating."""
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    # -- agents ------------------------------------------------------------------------------

    async def login(self, agent: Agent, *, ready: bool = False) -> None:
        """An agent logged in (not ready unless `ready`).

        An agent whose scope is in resiliency mode is sent a notice at once.
        """
        await self._apply(lambda now: self._router.login(agent, now, ready=ready))
        self._continuity.logged_in(agent)

    async def ready(self, agent_id: str) -> None:
        """An agent is ready for calls."""
        await self._apply(lambda now: self._router.ready(agent_id, now))

    async def not_ready(self, agent_id: str, reason: str = "") -> None:
        """An agent is not ready; a ringing offer is withdrawn and goes to someone else."""
        await self._apply(lambda now: self._router.not_ready(agent_id, now, reason))

    async def logout(self, agent_id: str) -> None:
        """An agent logged out; a call in progress carries on."""
        await self._apply(lambda now: self._router.logout(agent_id, now))
        self._continuity.logged_out(agent_id)

    async def finish_wrap_up(self, agent_id: str) -> None:
        """An agent finished after-call work early."""
        await self._apply(lambda now: self._router.finish_wrap_up(agent_id, now))

    # -- calls -------------------------------------------------------------------------------

    async def call_arrived(self, call: Call) -> None:
        """A call arrived: it is queued and offered at once if an agent is free.

        Raises:
            DuplicateCall: The call id is in use or was used before.
        """

        def arrive(now: float) -> list[Decision]:
            decisions = self._router.arrive(call, now)
            self._calls[call.call_id] = _CallLog(call)
            return decisions

        await self._apply(arrive)

    async def accept(self, call_id: str, agent_id: str) -> None:
        """The agent accepted the offer: the call connects now; its records are journaled.

        Raises:
            OfferNotPending: The offer expired, was withdrawn or went to another agent.
        """
        await self._apply(lambda now: self._router.accept(call_id, agent_id, now))

    async def reject(self, call_id: str, agent_id: str, reason: str | None = None) -> None:
        """The agent rejected the offer: the call goes to the next agent."""
        if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
            raise InvalidInput("reason: give a string of at most 200 characters", field="reason")

        def reject(now: float) -> list[_Step]:
            decisions = self._router.reject(call_id, agent_id, now)
            self._emit(OfferRejected(call_id, agent_id, reason))
            return [_OfferClosed(call_id, agent_id, OfferOutcome.REJECTED), *decisions]

        await self._apply(reject)

    async def no_answer(self, call_id: str, agent_id: str) -> None:
        """The platform's own ring timer ran out: the same as the engine's offer timeout."""
        await self._apply(lambda now: self._router.no_answer(call_id, agent_id, now))

    async def assign(self, call_id: str, agent_id: str) -> None:
        """Offer a waiting call to a chosen agent, ahead of the routing strategy.

        For platforms that pick the agent themselves (and for supervisors): the engine then
        records the offer, its outcome and the call's records as for its own offers.
        """
        await self._apply(lambda now: self._router.assign(call_id, agent_id, now))

    async def hangup(self, call_id: str) -> None:
        """The caller hung up (waiting, ringing or connected)."""
        await self._apply(lambda now: self._router.hangup(call_id, now))

    async def end(self, call_id: str) -> None:
        """The agent or the platform ended the call.

        A call that was not connected yet (waiting or ringing) ends as if the caller hung up,
        so an adapter can send its platform's one "disconnected" event here.
        """

        def end(now: float) -> list[Decision]:
            if self._router.call_state(call_id) is CallState.CONNECTED:
                return self._router.end(call_id, now)
            return self._router.hangup(call_id, now)

        await self._apply(end)

    async def disconnect(self, call_id: str) -> None:
        """The agent disconnected the call (the same as `end`)."""
        await self.end(call_id)

    async def hold(self, call_id: str) -> None:
        """The agent put the caller on hold (written to the Interaction when enabled)."""
        await self._hold(call_id, hold=True)

    async def resume(self, call_id: str) -> None:
        """The agent took the caller off hold."""
        await self._hold(call_id, hold=False)

    async def mute(self, call_id: str) -> None:
        """The agent muted; nothing is written to ServiceNow, and no Interaction is needed."""
        self._connected(call_id, "mute")

    async def unmute(self, call_id: str) -> None:
        """The agent unmuted."""
        self._connected(call_id, "unmute")

    async def open_interaction(self, call_id: str) -> str:
        """Create the call's Interaction now, ahead of the queue, and return its sys_id.

        Raises:
            ItsmUnavailable: The instance cannot create it now; the journal keeps the intent
                and the Interaction is created when the instance recovers.
            CallStateError: The call is not connected.
        """
        entry = self._connected(call_id, "open an Interaction for")
        known = self._interactions.get(call_id)
        if known is not None:
            return known
        agent = self._agent_of(entry)
        if not entry.interaction:
            entry.interaction = True
            await self._append(
                self._records.opened(
                    entry.call, agent, linked=entry.phone_log, group=self._group(entry, agent)
                )
            )
        known = (await self._store.call_results(call_id)).get(INTERACTION)
        if known is not None:
            return known
        if self._continuity.in_resiliency(agent):
            raise ItsmUnavailable(
                "the agent's scope is in resiliency mode, so nothing is created inline; the "
                "Interaction is journaled and will be created when the mode is back to normal"
            )
        breaker = self._drainer.breaker()
        if breaker.state(self._clock.now()) is not BreakerState.CLOSED:
            raise ItsmUnavailable(
                "the instance is unavailable (its circuit breaker is open); the Interaction "
                "is journaled and will be created when it recovers"
            )
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(call_id, []).append(waiter)
        self._drainer.wake()
        timeout = self._config.open_interaction_timeout
        await sleep_or_wake(self._clock, timeout, _done_event(waiter))
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        raise ItsmUnavailable(
            f"the instance did not create the Interaction within {timeout:g} s; it is "
            "journaled and will be created as soon as the instance answers"
        )

    async def transfer(self, call_id: str, target: str) -> None:
        """Hand a transfer to the adapter; refused until the call has an Interaction.

        Raises:
            InteractionRequired: The call has no Interaction yet; open one first.
            TransferTargetUnavailable: The configured `transfer_check` says the target is
                down (or did not answer in time); the call stays with its agent.
            InvalidInput: The target is not a plain identifier or number.
        """
        if not isinstance(target, str) or not _TARGET_RE.fullmatch(target):
            raise InvalidInput(
                "target: give 1-128 letters, digits and '._:@+-' (a queue, an agent id or an "
                "E.164 number)",
                field="target",
            )
        entry = self._connected(call_id, "transfer")
        sys_id = self._interactions.get(call_id)
        if sys_id is None:
            sys_id = (await self._store.call_results(call_id)).get(INTERACTION)
        if sys_id is None:
            raise InteractionRequired(
                f"call {call_id!r} has no Interaction yet, and ServiceNow needs one to "
                "transfer; call open_interaction() first (it fails fast while the instance is "
                "down)"
            )
        await self._check_target(target)
        await self._channel.transfer(self._agent_of(entry), call_id, target, sys_id)

    # -- continuity --------------------------------------------------------------------------

    async def report_component(
        self,
        name: str,
        status: ComponentStatus,
        *,
        scopes: Iterable[str] | None = None,
        urgent: bool = False,
    ) -> None:
        """Report the health of one of the adapter's components (carrier, network, site).

        Args:
            name: The component, e.g. ``"carrier-emea"``.
            status: How it is doing now.
            scopes: The scopes that depend on it; needed the first time (None there means
                every scope), kept from then on unless given again.
            urgent: Switch its scopes at once if it is failing, without waiting for
                `ModeConfig.enter_after` (for an outage the adapter is sure of).

        A component failing long enough (`ModeConfig.enter_after`) switches its scopes to
        resiliency mode; incidents open and resolve with its status.

        Raises:
            InvalidInput: A bad name, status or scope, or the engine's own ``"servicenow"``.
        """
        self._continuity.report(name, status, scopes, urgent=urgent)

    async def force_mode(self, scope: str, mode: Mode | None) -> None:
        """Hold a scope in `mode` whatever the health, until released with None."""
        self._continuity.force(scope, mode)

    def mode(self, scope: str) -> Mode:
        """The mode a scope is in now."""
        return self._continuity.mode(scope)

    async def acknowledge(self, agent_id: str, notice_id: int | None = None) -> int:
        """The agent read its mode notices (or only `notice_id`); return how many.

        An acknowledged notice is not sent again as forced.

        Raises:
            UnknownAgent: The agent never logged in.
            InvalidInput: `notice_id` is not an unacknowledged notice of this agent.
        """
        self._router.agent(agent_id)
        return self._continuity.acknowledge(agent_id, notice_id)

    def watch_node(
        self, node: str, *, check: NodeCheck | None = None, interval: float = 5.0
    ) -> None:
        """Watch a node's link: by `heartbeat` calls, or by calling `check` every `interval`.

        A node silent for `EngineConfig.node_timeout` is unreachable: its agents are offered
        nothing and its ringing offers go elsewhere at once, until its next heartbeat.
        """
        self._continuity.watch(node, check, interval)

    async def heartbeat(self, node: str) -> None:
        """A heartbeat from a node (it is reachable)."""
        check_identifier("node", node)
        await self._apply(lambda now: self._continuity.heartbeat(node))

    def open_incident(
        self, title: str, severity: Severity, *, scopes: Iterable[str] = ()
    ) -> Incident:
        """Open an incident by hand (for the status page); it stays open until resolved.

        Raises:
            InvalidInput: An empty or over-long title, or a bad severity or scope.
        """
        return self._continuity.open_incident(title, severity, scopes).incident

    def resolve_incident(self, incident_id: int) -> Incident:
        """Resolve an incident opened by hand (or one that should not wait for its component).

        Raises:
            InvalidInput: No open incident has this id.
        """
        return self._continuity.resolve_incident(incident_id).incident

    async def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for a status page.

        Components, modes per scope, open and recent incidents, agents by state, outstanding
        notices, nodes, the endpoint in use and each endpoint's breaker, calls waiting, and
        the journal: depth, oldest pending age, dead entries and held groups.
        """
        counts = await self._store.counts()
        oldest = await self._store.oldest_pending(self._clock.time())
        snapshot = {"time": self._clock.time(), **self._continuity.status()}
        snapshot["calls"] = {
            "waiting": self._router.waiting_count,
            "active": self._router.active_count,
        }
        snapshot["journal"] = {
            "depth": counts[EntryState.PENDING] + counts[EntryState.IN_FLIGHT],
            "pending": counts[EntryState.PENDING],
            "in_flight": counts[EntryState.IN_FLIGHT],
            "dead": counts[EntryState.DEAD],
            "done": counts[EntryState.DONE],
            "oldest_pending_age_s": oldest,
            "held_groups": sorted(self._drainer.held),
        }
        return snapshot

    # -- inside ------------------------------------------------------------------------------

    def _connected(self, call_id: str, action: str) -> _CallLog:
        state = self._router.call_state(call_id)
        if state is not CallState.CONNECTED:
            raise CallStateError(
                f"cannot {action} call {call_id!r}: it is {state.value}, not connected"
            )
        return self._calls[call_id]

    def _agent_of(self, entry: _CallLog) -> Agent:
        return self._router.agent_profile(entry.agent_id or "")

    def _group(self, entry: _CallLog, agent: Agent | None) -> str:
        """The call's journal group, fixed by the first agent its records are made for."""
        if entry.group is None:
            entry.group = self._continuity.group(agent)
        return entry.group

    async def _check_target(self, target: str) -> None:
        check = self._config.transfer_check
        if check is None:
            return
        timeout = self._config.transfer_check_timeout
        try:
            ok = await wait_within(self._clock, check(target), timeout)
        except TimeoutError:
            reason = f"the endpoint check did not answer within {timeout:g} s"
        except Exception as error:
            reason = f"the endpoint check failed ({type(error).__name__})"
        else:
            if ok is True:
                return
            reason = "the endpoint check says it is down"
        raise TransferTargetUnavailable(
            f"transfer target {target!r} is unavailable: {reason}; the call stays with its "
            "agent, pick another target or try again later"
        )

    async def _hold(self, call_id: str, *, hold: bool) -> None:
        entry = self._connected(call_id, "hold" if hold else "resume")
        if entry.on_hold == hold:
            return  # coalesced: the Interaction already says so
        entry.on_hold = hold
        entry.holds += 1
        if entry.interaction:
            group = self._group(entry, self._agent_of(entry))
            await self._append(self._records.held(entry.call, hold, entry.holds, group=group))

    async def _apply(self, operation: Callable[[float], Sequence[_Step]]) -> None:
        """Fire due timers, then run one router operation and carry out its decisions."""
        now = self._clock.now()
        due = self._router.advance(now)
        try:
            decisions = operation(now)  # a refused event raises here and changes nothing
        except Exception:
            # What the timers decided stands whether or not the event was refused.
            await self._carry_out(due)
            raise
        await self._carry_out([*due, *decisions] if due else decisions)
        self._timer_wake.set()

    async def _carry_out(self, decisions: Sequence[_Step]) -> None:
        """Execute the router's decisions: channel calls in the background, records journaled.

        The intents are appended in one batch, in decision order, before anything else is
        awaited, so each call's entries keep the order of its events. The events are published
        once the intents are in the journal: a subscriber that sees `CallEnded` finds the
        call's closing entries there.

        An offer that ended (a `WithdrawOffer`, or an `_OfferClosed` mark) is reported by the
        router's `CallRedirected` when its call goes back in line; when the call overflows
        instead, the engine reports it with `OfferEnded`, just before `CallOverflowed`.
        """
        intents: list[Intent] = []
        follow_up: list[Decision] = []
        events: list[Any] = []
        ended: dict[str, tuple[str, OfferOutcome]] = {}  # by call: ended, not reported yet
        unix = self._clock.time()
        self._held_events.append(events)
        try:
            for decision in decisions:
                # Orders and marks are carried out, not published.
                if isinstance(decision, OfferCall):
                    follow_up += self._offer(decision)
                    continue
                if isinstance(decision, WithdrawOffer):
                    intents += self._withdrawn(decision, unix)
                    ended[decision.call_id] = (decision.agent_id, decision.outcome)
                    continue
                if isinstance(decision, _OfferClosed):
                    ended[decision.call_id] = (decision.agent_id, decision.outcome)
                    continue
                if isinstance(decision, CallConnected):
                    intents += self._connected_records(decision, unix)
                elif isinstance(decision, CallRedirected):
                    ended.pop(decision.call_id, None)
                elif isinstance(decision, CallEnded | CallAbandoned | CallOverflowed):
                    offer = ended.pop(decision.call_id, None)
                    if offer is not None and isinstance(decision, CallOverflowed):
                        events.append(OfferEnded(decision.call_id, *offer))
                    intents += self._finished(decision, unix)
                events.append(decision)  # as `_emit` would: held until the append
        finally:
            self._held_events.pop()
        try:
            if intents:
                await self._append(intents)
        finally:
            for event in events:
                self._publish(event)
        if follow_up:
            await self._carry_out(follow_up)
        self._continuity.calls_moved()

    def _offer(self, decision: OfferCall) -> list[Decision]:
        agent = self._router.agent_profile(decision.agent_id)
        entry = self._calls[decision.call_id]
        entry.attempt = decision.attempt
        deadline = self._clock.time() + (decision.deadline - self._clock.now())
        offer = Offer(entry.call, deadline, decision.attempt)
        self._emit(CallOffered(decision.call_id, decision.agent_id, deadline, decision.attempt))
        self._spawn(self._deliver(agent, offer))
        if self._config.auto_accept:
            return self._router.accept(decision.call_id, decision.agent_id, self._clock.now())
        return []

    async def _deliver(self, agent: Agent, offer: Offer) -> None:
        try:
            await self._channel.offer(agent, offer)
        except Exception as error:
            log.warning(
                "offer of call %s to agent %s failed (%s): redirecting",
                offer.call.call_id,
                agent.agent_id,
                type(error).__name__,
            )
            call_id = offer.call.call_id
            try:
                decisions = self._router.unreachable(call_id, agent.agent_id, self._clock.now())
            except RoutingError:
                return  # the offer ended meanwhile (accepted, withdrawn, timed out)
            closed = _OfferClosed(call_id, agent.agent_id, OfferOutcome.UNREACHABLE)
            await self._carry_out([closed, *decisions])

    def _withdrawn(self, decision: WithdrawOffer, unix: float) -> list[Intent]:
        agent = self._router.agent_profile(decision.agent_id)
        self._spawn(self._call_channel(self._channel.withdraw, agent, decision))
        if decision.outcome is not OfferOutcome.NO_ANSWER:
            return []
        entry = self._calls[decision.call_id]
        attempt = entry.attempt
        self._emit(OfferTimedOut(decision.call_id, decision.agent_id, attempt))
        intents = self._records.timed_out(
            entry.call,
            agent,
            attempt,
            unix,
            interaction_exists=entry.interaction,
            group=self._group(entry, agent),
        )
        entry.interaction = True
        return intents

    def _connected_records(self, decision: CallConnected, unix: float) -> list[Intent]:
        entry = self._calls[decision.call_id]
        agent = self._router.agent_profile(decision.agent_id)
        entry.agent_id = decision.agent_id
        entry.answered_at = unix
        intents = self._records.accepted(
            entry.call,
            agent,
            unix,
            interaction_exists=entry.interaction,
            group=self._group(entry, agent),
        )
        entry.phone_log = entry.interaction = True
        return intents

    def _finished(
        self, decision: CallEnded | CallAbandoned | CallOverflowed, unix: float
    ) -> list[Intent]:
        """Close the call's records; one nobody answered (hung up, overflowed) is abandoned."""
        entry = self._calls.pop(decision.call_id)
        return self._records.ended(
            entry.call,
            started=entry.answered_at,
            ended=unix,
            answered=isinstance(decision, CallEnded),
            interaction_exists=entry.interaction,
            group=entry.group or "",
        )

    async def _call_channel(
        self,
        method: Callable[[Agent, str, OfferOutcome], Awaitable[None]],
        agent: Agent,
        decision: WithdrawOffer,
    ) -> None:
        try:
            await method(agent, decision.call_id, decision.outcome)
        except Exception as error:
            log.warning("withdraw of call %s failed: %s", decision.call_id, type(error).__name__)

    async def _append(self, intents: list[Intent]) -> None:
        await self._store.append(intents, self._clock.time())
        self._drainer.wake()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _timers(self) -> None:
        """Fire the router's timers on the clock: offer deadlines, pauses, wrap-up, waits."""
        while True:
            self._timer_wake.clear()
            deadlines = [
                t
                for t in (self._router.next_deadline(), self._continuity.next_deadline())
                if t is not None
            ]
            wait = 3600.0 if not deadlines else max(0.0, min(deadlines) - self._clock.now())
            if wait > 0:
                await sleep_or_wake(self._clock, wait, self._timer_wake)
            else:
                await asyncio.sleep(0)  # never starve the loop, even if a deadline stays due
            try:
                due = self._router.advance(self._clock.now())
                await self._carry_out(due + self._continuity.advance())
            except Exception:
                log.exception("carrying out the timers failed")

    def _emit(self, event: Any) -> None:
        """Publish an event (orders never come here: `_carry_out` carries them out)."""
        if self._held_events:
            self._held_events[-1].append(event)  # published after the journal append
            return
        self._publish(event)

    def _publish(self, event: Any) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("an event subscriber failed on %s", type(event).__name__)

    def _endpoint_changed(self, old: str, new: str, reason: str) -> None:
        self._continuity.endpoint_changed(old, new, reason)

    def _emit_drained(self, event: Any) -> None:
        if (
            isinstance(event, RecordWritten)
            and event.name == INTERACTION
            and event.kind == "create"
        ):
            self._remember_interaction(event.call_id, event.sys_id)
            self._emit(InteractionCreated(event.call_id, event.sys_id))
        self._emit(event)
        if isinstance(event, BreakerStateChanged):
            self._continuity.instance_changed()

    def _remember_interaction(self, call_id: str, sys_id: str) -> None:
        self._interactions[call_id] = sys_id
        if len(self._interactions) > _REMEMBERED_INTERACTIONS:
            self._interactions.popitem(last=False)
        for waiter in self._waiters.pop(call_id, []):
            if not waiter.done():
                waiter.set_result(sys_id)


def _done_event(future: asyncio.Future[str]) -> asyncio.Event:
    """An event set when `future` completes."""
    event = asyncio.Event()
    future.add_done_callback(lambda _: event.set())
    return event
