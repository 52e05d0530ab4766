"""The engine's business continuity: health, modes, notices, incidents, nodes, failback.

The decisions are made by the pure cores in `callresilience.health`; this module feeds them
(breaker changes, the adapter's component reports and heartbeats, the router's agents) and
carries out what they decide: events, agent notices through the channel, held journal groups,
the router's node changes, and the move back to the primary URL. Nothing here is awaited on
the call path; channel calls and probes run in background tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final

from .._clock import Clock, wait_within
from .._errors import CallResilienceError, InvalidInput
from .._model import Agent, check_identifier
from .._validators import positive_seconds
from ..health import (
    ComponentStatus,
    IncidentBook,
    IncidentChanged,
    LinkMonitor,
    Mode,
    ModeChanged,
    ModeController,
    ModeNotice,
    NodeLinkChanged,
    NoticeBoard,
    Severity,
)
from ..journal import Drainer
from ..resilience import BreakerState
from ..routing import AgentActivity, Decision, Router
from ..servicenow import ServiceNowClient
from ._types import AgentChannel, AgentNotified, EndpointChanged, EngineConfig, Notice

__all__ = ["INSTANCE", "Continuity"]

log = logging.getLogger("callresilience.engine.continuity")

#: The component name of the ServiceNow instance; every scope depends on it.
INSTANCE: Final = "servicenow"

_BUSY: Final = frozenset({AgentActivity.RESERVED, AgentActivity.ON_CALL})

NodeCheck = Callable[[], Awaitable[bool]]


def _notice(notice: ModeNotice) -> Notice:
    mode = notice.mode.value
    if notice.mode is Mode.RESILIENCY:
        text = f"{notice.scope}: switch to resiliency mode ({notice.reason})."
    else:
        text = f"{notice.scope}: back to normal mode ({notice.reason})."
    if notice.forced:
        text = "Now: " + text
    data = {
        "notice_id": notice.notice_id,
        "scope": notice.scope,
        "mode": mode,
        "forced": notice.forced,
        "reason": notice.reason,
    }
    return Notice("mode", text, data)


class Continuity:
    """Health, modes and their consequences, for one engine.

    Args:
        config: The engine's settings.
        clock: The engine's clock; the cores run on its monotonic `now()`.
        router: The engine's router (agents' activity; node changes).
        channel: The adapter's channel, for notices.
        drainer: The drainer (its breaker is the instance's health; groups are held there).
        client: The ServiceNow client (its endpoints).
        emit: Publishes an event.
        spawn: Runs a coroutine in the background.
        wake: Tells the engine's timer loop a deadline may have moved.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        clock: Clock,
        router: Router,
        channel: AgentChannel,
        drainer: Drainer,
        client: ServiceNowClient,
        emit: Callable[[Any], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        wake: Callable[[], None],
    ) -> None:
        self._config = config
        self._clock = clock
        self._router = router
        self._channel = channel
        self._drainer = drainer
        self._client = client
        self._emit = emit
        self._spawn = spawn
        self._wake = wake
        self._modes = ModeController(config.modes)
        self._modes.register(INSTANCE, None, clock.now())
        self._modes.add_scope(config.default_scope)
        self._incidents = IncidentBook()
        self._notices = NoticeBoard(config.notice_deadline)
        self._links = LinkMonitor(config.node_timeout)
        self._agents: set[str] = set()  # logged in; their scopes are the router's to tell
        self._groups: set[str] = set()  # journal groups seen: scope names joined by ","
        # An agent's own scopes -> its group, once seen (the group is then in `_groups`).
        self._group_of: dict[frozenset[str], str] = {}
        self._default_scopes = frozenset({config.default_scope})
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._heartbeats: list[str] = []  # from node checks, applied by `advance`
        self._healthy_since: float | None = None

    # -- scopes and groups ---------------------------------------------------------------------

    def scopes(self, agent: Agent) -> frozenset[str]:
        """The scopes an agent works in (the default scope when it names none)."""
        return agent.scopes or self._default_scopes

    def group(self, agent: Agent | None) -> str:
        """The journal group of records made for `agent` (held while a scope of it is)."""
        if agent is None:
            return ""
        name = self._group_of.get(agent.scopes)
        if name is None:
            name = ",".join(sorted(self.scopes(agent)))
            self._group_of[agent.scopes] = name
            if name not in self._groups:
                self._groups.add(name)
                self._hold()
        return name

    def in_resiliency(self, agent: Agent | None) -> bool:
        """Whether any scope of `agent` (the default scope for None) is in resiliency mode."""
        return self._resilient(self.scopes(agent) if agent else self._default_scopes)

    def mode(self, scope: str) -> Mode:
        """The mode of a scope."""
        return self._modes.mode(check_identifier("scope", scope))

    def _resilient(self, scopes: Iterable[str]) -> bool:
        return any(self._modes.mode(scope) is Mode.RESILIENCY for scope in scopes)

    def _hold(self) -> None:
        held = {name for name in self._groups if self._resilient(name.split(","))}
        if held != self._drainer.held:
            self._drainer.hold(held)

    # -- agents --------------------------------------------------------------------------------

    def logged_in(self, agent: Agent) -> None:
        """An agent logged in: it learns at once of any scope of it in resiliency mode."""
        scopes = self.scopes(agent)
        self._agents.add(agent.agent_id)
        now = self._clock.now()
        for scope in sorted(scopes):
            self._modes.add_scope(scope)
            if self._modes.mode(scope) is Mode.RESILIENCY:
                change = ModeChanged(scope, Mode.NORMAL, Mode.RESILIENCY, now, "in force at login")
                self._send(self._notices.mode_changed(change, [(agent.agent_id, False)], now))
        self.group(agent)

    def logged_out(self, agent_id: str) -> None:
        """An agent logged out: what it was still to be told is dropped."""
        self._agents.discard(agent_id)
        self._notices.agent_gone(agent_id)

    def calls_moved(self) -> None:
        """After the router acted: agents whose call is over get the notices held for them."""
        waiting = self._notices.waiting_for_call_end()
        if not waiting:
            return
        now = self._clock.now()
        for agent_id in sorted(waiting):
            if not self._busy(agent_id):
                self._send(self._notices.agent_free(agent_id, now))

    def acknowledge(self, agent_id: str, notice_id: int | None) -> int:
        """The agent read its notices; see `Engine.acknowledge`."""
        return self._notices.acknowledge(agent_id, notice_id)

    def _busy(self, agent_id: str) -> bool:
        return self._router.agent(agent_id).activity in _BUSY

    def _send(self, notices: Iterable[ModeNotice]) -> None:
        for notice in notices:
            self._spawn(self._notify(notice))
            self._emit(
                AgentNotified(
                    notice.agent_id, notice.notice_id, notice.scope, notice.mode, notice.forced
                )
            )
        self._wake()

    async def _notify(self, notice: ModeNotice) -> None:
        try:
            agent = self._router.agent(notice.agent_id).agent
            await self._channel.notify(agent, _notice(notice))
        except Exception as error:
            log.warning(
                "notice %d to agent %s failed: %s",
                notice.notice_id,
                notice.agent_id,
                type(error).__name__,
            )

    # -- components and modes ------------------------------------------------------------------

    def instance_changed(self) -> None:
        """The breaker or the endpoint in use changed: report the instance's health."""
        now = self._clock.now()
        state = self._drainer.breaker().state(now)
        status = (
            ComponentStatus.OPERATIONAL if state is BreakerState.CLOSED else ComponentStatus.OUTAGE
        )
        if status is self._modes.component(INSTANCE):
            return
        self._component(INSTANCE, status, urgent=state is BreakerState.OPEN)

    def report(
        self,
        name: str,
        status: ComponentStatus,
        scopes: Iterable[str] | None,
        *,
        urgent: bool = False,
    ) -> None:
        """The adapter reports a component; see `Engine.report_component`."""
        if not isinstance(status, ComponentStatus):
            raise InvalidInput(
                "status: give ComponentStatus.OPERATIONAL, DEGRADED or OUTAGE", field="status"
            )
        check_identifier("component", name)
        if name == INSTANCE:
            raise InvalidInput(
                f"component: {INSTANCE!r} is the engine's own (fed by the breaker); report "
                "your components under other names",
                field="component",
            )
        if scopes is not None or not self._modes.is_registered(name):
            self._modes.register(name, scopes, self._clock.now())
        self._component(name, status, urgent=urgent)

    def force(self, scope: str, mode: Mode | None) -> None:
        """An operator holds a scope in a mode; see `Engine.force_mode`."""
        if mode is not None and not isinstance(mode, Mode):
            raise InvalidInput(
                "mode: give Mode.NORMAL, Mode.RESILIENCY or None to release", field="mode"
            )
        self._changed(self._modes.force(scope, mode, self._clock.now()))

    def _component(self, name: str, status: ComponentStatus, *, urgent: bool = False) -> None:
        scopes = self._modes.scopes_of(name)
        for change in self._incidents.component_changed(name, status, scopes, self._clock.time()):
            self._emit(change)
        self._changed(self._modes.report(name, status, self._clock.now(), urgent=urgent))

    def _changed(self, changes: list[ModeChanged]) -> None:
        if not changes:
            self._wake()
            return
        now = self._clock.now()
        for change in changes:
            log.warning(
                "scope %s: %s -> %s (%s)",
                change.scope,
                change.old.value,
                change.new.value,
                change.reason,
            )
            self._emit(change)
            agents = [
                (agent_id, self._busy(agent_id))
                for agent_id in sorted(self._agents)
                if change.scope in self.scopes(self._router.agent(agent_id).agent)
            ]
            self._send(self._notices.mode_changed(change, agents, now))
        self._hold()

    # -- incidents -----------------------------------------------------------------------------

    def open_incident(
        self, title: str, severity: Severity, scopes: Iterable[str]
    ) -> IncidentChanged:
        """Open an incident by hand; see `Engine.open_incident`."""
        change = self._incidents.open(title, severity, scopes, self._clock.time())
        self._emit(change)
        return change

    def resolve_incident(self, incident_id: int) -> IncidentChanged:
        """Resolve an incident by hand; see `Engine.resolve_incident`."""
        change = self._incidents.resolve(incident_id, self._clock.time())
        self._emit(change)
        return change

    # -- nodes ---------------------------------------------------------------------------------

    def watch(self, node: str, check: NodeCheck | None, interval: float) -> None:
        """Expect heartbeats from `node`, or ask `check` every `interval` seconds."""
        if check is not None and not callable(check):
            raise InvalidInput(
                "check: give an async function returning True while the node is reachable",
                field="check",
            )
        interval = positive_seconds("interval", interval)
        self._links.watch(node, self._clock.now())
        if check is None:
            return
        previous = self._checks.pop(node, None)
        if previous is not None:
            previous.cancel()
        self._checks[node] = asyncio.create_task(
            self._check_loop(node, check, interval), name=f"callresilience-node-{node}"
        )
        self._wake()

    def heartbeat(self, node: str) -> list[Decision]:
        """A heartbeat from `node`; returns what the router does if its link came back."""
        return self._nodes(self._links.heartbeat(node, self._clock.now()))

    async def _check_loop(self, node: str, check: NodeCheck, interval: float) -> None:
        while True:
            try:
                ok = await wait_within(self._clock, check(), interval)
            except Exception as error:
                log.warning("check of node %s failed: %s", node, type(error).__name__)
                ok = False
            if ok is True:
                self._heartbeats.append(node)
                self._wake()
            await self._clock.sleep(interval)

    def _nodes(self, changes: list[NodeLinkChanged]) -> list[Decision]:
        decisions: list[Decision] = []
        now = self._clock.now()
        for change in changes:
            log.warning(
                "node %s: link %s (%s)", change.node, "up" if change.up else "down", change.reason
            )
            self._emit(change)
            if change.up:
                decisions += self._router.node_up(change.node, now)
            else:
                decisions += self._router.node_down(change.node, now)
        return decisions

    # -- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time something here is due (a switch, a forced notice, a lost link)."""
        times = [
            t
            for t in (
                self._modes.next_deadline(),
                self._notices.next_deadline(),
                self._links.next_deadline(),
            )
            if t is not None
        ]
        return min(times) if times else None

    def advance(self) -> list[Decision]:
        """Do what is due now; return the router's decisions for nodes that changed."""
        now = self._clock.now()
        heartbeats, self._heartbeats = self._heartbeats, []
        decisions: list[Decision] = []
        for node in heartbeats:
            decisions += self.heartbeat(node)
        self._changed(self._modes.advance(now))
        self._send(self._notices.advance(now))
        return decisions + self._nodes(self._links.advance(now))

    # -- endpoints -----------------------------------------------------------------------------

    def endpoint_changed(self, old: str, new: str, reason: str) -> None:
        """The client moved to another URL (the client's `on_endpoint_change`)."""
        self._healthy_since = None
        self._emit(EndpointChanged(old, new, reason))
        self.instance_changed()

    async def failback_loop(self) -> None:
        """While on a secondary URL, probe the primary; move back once it has stayed healthy."""
        cfg = self._config
        primary = self._client.primary
        while True:
            await self._clock.sleep(cfg.failback_probe_every)
            if self._client.endpoint == primary:
                self._healthy_since = None
                continue
            try:
                await self._client.probe(endpoint=primary)
            except CallResilienceError as error:
                log.info("failback probe of %s failed: %s", primary, type(error).__name__)
                self._healthy_since = None
                continue
            now = self._clock.now()
            if self._healthy_since is None:
                self._healthy_since = now
            if now - self._healthy_since >= cfg.failback_after:
                # The probes are the evidence: the breaker the primary had when it failed
                # starts afresh, or its old state would be read as a new outage.
                for event in self._drainer.breaker(primary).reset(now):
                    self._emit(event)
                self._client.use_endpoint(primary, reason="failback")

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The continuity part of `Engine.status`, JSON-ready (times in UNIX seconds)."""
        offset = self._clock.time() - self._clock.now()
        components = self._modes.components()
        for component in components.values():
            component["since"] += offset
        now = self._clock.now()
        agents: dict[str, int] = {}
        for agent_id in self._agents:
            view = self._router.agent(agent_id)
            if not self._links.is_up(view.agent.node):
                state = "unreachable"
            elif view.status.value == "available" and view.paused_until > now:
                state = "paused"  # after a rejected or missed offer, until paused_until
            elif view.status.value == "available":
                state = view.activity.value
            else:
                state = view.status.value
            agents[state] = agents.get(state, 0) + 1
        client = self._client
        return {
            "components": components,
            "modes": self._modes.modes(),
            "incidents": {
                "open": [i.as_dict() for i in self._incidents.open_incidents()],
                "resolved": [i.as_dict() for i in self._incidents.recent()],
            },
            "agents": dict(sorted(agents.items())),
            "notices": [
                {**n, "force_at": None if n["force_at"] is None else n["force_at"] + offset}
                for n in self._notices.outstanding()
            ],
            "nodes": {
                node: ("up" if self._links.is_up(node) else "down")
                for node in sorted(self._links.nodes())
            },
            "servicenow": {
                "endpoint": client.endpoint,
                "primary": client.primary,
                "endpoints": list(client.endpoints),
                "failover_in_progress": client.endpoint != client.primary,
                "primary_healthy_since": (
                    None if self._healthy_since is None else self._healthy_since + offset
                ),
                "breakers": {
                    url: self._drainer.breaker(url).state(now).value for url in client.endpoints
                },
            },
        }

    def close(self) -> list[asyncio.Task[None]]:
        """Stop the node checks; return their tasks to await."""
        tasks = list(self._checks.values())
        for task in tasks:
            task.cancel()
        self._checks.clear()
        return tasks
