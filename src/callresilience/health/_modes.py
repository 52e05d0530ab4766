"""Resiliency modes per scope, decided from component health with hysteresis. Pure.

A scope (an account, a region, or both, named by the adapter) is in `normal` or `resiliency`
mode. It enters resiliency when a component it depends on has been failing (degraded counts
only if configured) for `enter_after` seconds, or at once when the component says so (the
ServiceNow breaker opening); it leaves after every component it depends on has been healthy
for `leave_after` seconds. An operator may force a mode, which holds until released.

No clock and no I/O: every method takes `now` and returns the changes it caused; the shell
calls `advance(now)` at `next_deadline()`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from .._errors import InvalidInput
from .._model import check_identifier
from .._validators import seconds_at_least_zero

__all__ = ["ComponentStatus", "Mode", "ModeChanged", "ModeConfig", "ModeController"]


class ComponentStatus(enum.Enum):
    """How a component is doing."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    OUTAGE = "outage"


def describe(component: str, status: ComponentStatus) -> str:
    """A component's status in words: ``"carrier-emea is down"``."""
    words = {ComponentStatus.OUTAGE: "down"}.get(status, status.value)
    return f"{component} is {words}"


class Mode(enum.Enum):
    """How a scope works: with ServiceNow inline, or riding on the journal."""

    NORMAL = "normal"
    RESILIENCY = "resiliency"


@attrs.frozen
class ModeConfig:
    """The hysteresis.

    Attributes:
        enter_after: Seconds a component must have been failing before its scopes switch.
        leave_after: Seconds all of a scope's components must have been healthy to switch back.
        degraded_counts: Whether `degraded` counts as failing (by default only `outage` does).
    """

    enter_after: float = attrs.field(default=10.0, validator=seconds_at_least_zero)
    leave_after: float = attrs.field(default=60.0, validator=seconds_at_least_zero)
    degraded_counts: bool = False


@attrs.frozen
class ModeChanged:
    """A scope switched mode at `at`, because of `reason`."""

    scope: str
    old: Mode
    new: Mode
    at: float
    reason: str


@attrs.define
class _Component:
    scopes: frozenset[str] | None  # None: every scope, those added later included
    status: ComponentStatus = ComponentStatus.OPERATIONAL
    since: float = 0.0
    urgent: bool = False  # the component asked for an immediate switch


@attrs.define
class _Scope:
    mode: Mode = Mode.NORMAL
    forced: Mode | None = None


class ModeController:
    """Decides each scope's mode from the health of the components it depends on.

    Args:
        config: The hysteresis.
    """

    def __init__(self, config: ModeConfig | None = None) -> None:
        self._config = config or ModeConfig()
        self._components: dict[str, _Component] = {}
        self._scopes: dict[str, _Scope] = {}

    def __repr__(self) -> str:
        return f"<ModeController scopes={self.modes()!r}>"

    # -- telling ---------------------------------------------------------------------------

    def register(self, component: str, scopes: Iterable[str] | None, now: float) -> None:
        """Declare a component and the scopes that depend on it (None: every scope).

        A new component starts operational; registering a known one again changes only its
        scopes.
        """
        check_identifier("component", component)
        names = None
        if scopes is not None:
            if isinstance(scopes, str) or not isinstance(scopes, Iterable):
                raise InvalidInput(
                    f"scopes: give a list of scope names, e.g. ['region:emea'], not {scopes!r}",
                    field="scopes",
                )
            names = frozenset(check_identifier("scope", scope) for scope in scopes)
            if not names:
                raise InvalidInput(
                    "scopes: name at least one scope, or None for all", field="scopes"
                )
            for scope in names:
                self._scopes.setdefault(scope, _Scope())
        known = self._components.get(component)
        if known is None:
            self._components[component] = _Component(names, since=now)
        else:
            known.scopes = names

    def add_scope(self, scope: str) -> None:
        """Declare a scope (normal to start with); components registered for all cover it."""
        self._scopes.setdefault(check_identifier("scope", scope), _Scope())

    def report(
        self, component: str, status: ComponentStatus, now: float, *, urgent: bool = False
    ) -> list[ModeChanged]:
        """A component's status changed; `urgent` switches its scopes without waiting.

        Raises:
            InvalidInput: The component was never registered.
        """
        entry = self._known(component)
        if entry.status is not status:
            entry.status = status
            entry.since = now
        entry.urgent = urgent and self._failing(entry)
        return self.advance(now)

    def force(self, scope: str, mode: Mode | None, now: float) -> list[ModeChanged]:
        """Hold a scope in `mode` whatever the health (None releases it)."""
        check_identifier("scope", scope)
        state = self._scopes.setdefault(scope, _Scope())
        state.forced = mode
        return self.advance(now)

    # -- reading ---------------------------------------------------------------------------

    def mode(self, scope: str) -> Mode:
        """The scope's mode (normal for a scope nothing depends on)."""
        state = self._scopes.get(scope)
        return state.mode if state else Mode.NORMAL

    def modes(self) -> dict[str, str]:
        """Every scope's mode, JSON-ready."""
        return {name: state.mode.value for name, state in sorted(self._scopes.items())}

    def component(self, name: str) -> ComponentStatus:
        """A component's last reported status.

        Raises:
            InvalidInput: The component was never registered.
        """
        return self._known(name).status

    def components(self) -> dict[str, dict[str, Any]]:
        """Every component's status, since when, and its scopes (None: all), JSON-ready."""
        return {
            name: {
                "status": c.status.value,
                "since": c.since,
                "scopes": None if c.scopes is None else sorted(c.scopes),
            }
            for name, c in sorted(self._components.items())
        }

    def scopes_of(self, component: str) -> frozenset[str]:
        """The scopes that depend on a component now."""
        scopes = self._known(component).scopes
        return frozenset(self._scopes) if scopes is None else scopes

    def is_registered(self, component: str) -> bool:
        """Whether the component was registered."""
        return component in self._components

    def next_deadline(self) -> float | None:
        """When a pending switch would happen if nothing else changes, or None."""
        cfg = self._config
        times = []
        for scope, state in self._scopes.items():
            if state.forced is not None:
                continue
            components = self._of(scope)
            failing = [c for c in components if self._failing(c)]
            if state.mode is Mode.NORMAL and failing:
                times.append(min(c.since for c in failing) + cfg.enter_after)
            elif state.mode is Mode.RESILIENCY and not failing and components:
                times.append(max(c.since for c in components) + cfg.leave_after)
        return min(times) if times else None

    # -- deciding --------------------------------------------------------------------------

    def advance(self, now: float) -> list[ModeChanged]:
        """Make every switch that is due at `now`."""
        changes: list[ModeChanged] = []
        for scope, state in sorted(self._scopes.items()):
            wanted, reason = self._wanted(scope, state, now)
            if wanted is not state.mode:
                changes.append(ModeChanged(scope, state.mode, wanted, now, reason))
                state.mode = wanted
        return changes

    def _wanted(self, scope: str, state: _Scope, now: float) -> tuple[Mode, str]:
        if state.forced is not None:
            return state.forced, "forced by an operator"
        cfg = self._config
        components = self._of(scope)
        failing = [c for c in components if self._failing(c)]
        if state.mode is Mode.NORMAL:
            for component in failing:
                name = self._name(component)
                if component.urgent:
                    return Mode.RESILIENCY, describe(name, component.status)
                if now >= component.since + cfg.enter_after:
                    return (
                        Mode.RESILIENCY,
                        f"{name} {component.status.value} for {now - component.since:.0f} s",
                    )
            return Mode.NORMAL, ""
        if failing:
            return Mode.RESILIENCY, ""
        healthy_since = max((c.since for c in components), default=now)
        if now >= healthy_since + cfg.leave_after:
            return Mode.NORMAL, f"healthy for {now - healthy_since:.0f} s"
        return Mode.RESILIENCY, ""

    def _failing(self, component: _Component) -> bool:
        if component.status is ComponentStatus.OUTAGE:
            return True
        return component.status is ComponentStatus.DEGRADED and self._config.degraded_counts

    def _of(self, scope: str) -> list[_Component]:
        return [c for c in self._components.values() if c.scopes is None or scope in c.scopes]

    def _known(self, component: str) -> _Component:
        entry = self._components.get(component)
        if entry is None:
            raise InvalidInput(
                f"component: {component!r} is not registered; register it with its scopes first",
                field="component",
            )
        return entry

    def _name(self, component: _Component) -> str:
        return next(name for name, c in self._components.items() if c is component)
