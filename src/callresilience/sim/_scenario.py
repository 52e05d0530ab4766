"""What a simulation runs: the contact center, the callers and the fault schedule. Pure.

Durations are virtual seconds. Fault options read like ``20s@10s`` ("for 20 s, starting 10 s
into the run"); parametric faults put their value first: ``300ms``, ``2s:30s@60s``,
``5/s:30s@20s``, ``0.2:40s@10s``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from ..testing import (
    AgentBehaviour,
    Distribution,
    DropResponse,
    Fault,
    Hibernating,
    Latency,
    RateLimit,
    RefuseConnections,
)

__all__ = [
    "Arrival",
    "FaultSpec",
    "Scenario",
    "ScenarioError",
    "arrivals",
    "parse_distribution",
    "parse_fault",
    "parse_seconds",
    "parse_window",
]

#: The kinds of fault a scenario can schedule, with the option that sets each.
FAULT_KINDS: Final = ("outage", "hibernate", "latency", "rate-limit", "ambiguous")
#: Kinds during which the instance does not answer at all (an outage, for the statistics).
UNAVAILABLE: Final = frozenset({"outage", "hibernate"})

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class ScenarioError(ValueError):
    """A scenario option that cannot be understood; the message says what to give."""


def parse_seconds(text: str, *, what: str = "duration") -> float:
    """Parse ``90``, ``20s``, ``1m30s``, ``1.5m`` or ``300ms`` into seconds.

    Raises:
        ScenarioError: Not a duration, or a negative one.
    """
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
        if value and _PART_RE.sub("", value) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(value))
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ScenarioError(
            f"{what}: {text!r} is not a duration; give seconds like 20s, 1m30s, 300ms or 45"
        )
    return seconds


def parse_window(text: str, *, what: str = "window") -> tuple[float, float]:
    """Parse ``DURATION@START`` (``20s@10s``) into ``(start, duration)`` seconds.

    Raises:
        ScenarioError: Not of that form, or a zero duration.
    """
    duration, at, start = text.partition("@")
    if not at or not duration.strip() or not start.strip():
        raise ScenarioError(
            f"{what}: {text!r} is not DURATION@START; e.g. 20s@10s is 20 s long, starting "
            "10 s into the run"
        )
    seconds = parse_seconds(duration, what=f"{what} duration")
    if seconds <= 0:
        raise ScenarioError(f"{what}: {text!r} lasts 0 s; give a duration > 0")
    return parse_seconds(start, what=f"{what} start"), seconds


def parse_distribution(text: str, *, what: str = "distribution") -> Distribution:
    """Parse ``20s`` (fixed), ``10s-40s`` (uniform) or ``exp:20s`` (exponential, that mean).

    Raises:
        ScenarioError: None of those forms.
    """
    value = text.strip().lower()
    if value.startswith("exp:"):
        mean = parse_seconds(value[4:], what=what)
        if mean <= 0:
            raise ScenarioError(f"{what}: {text!r}: an exponential needs a mean > 0")
        return Distribution.exponential(mean)
    low, dash, high = value.partition("-")
    if dash:
        a, b = parse_seconds(low, what=what), parse_seconds(high, what=what)
        if b < a:
            raise ScenarioError(f"{what}: {text!r}: give LOW-HIGH with LOW <= HIGH")
        return Distribution.uniform(a, b)
    try:
        return Distribution.fixed(parse_seconds(value, what=what))
    except ScenarioError:
        raise ScenarioError(
            f"{what}: {text!r} is not a distribution; give 20s (fixed), 10s-40s (uniform) or "
            "exp:20s (exponential with that mean)"
        ) from None


@attrs.frozen
class FaultSpec:
    """One scheduled fault.

    Attributes:
        kind: One of ``outage``, ``hibernate``, ``latency``, ``rate-limit``, ``ambiguous``.
        start: Seconds into the run.
        duration: Seconds it lasts (None: until the faults are cleared at the end).
        value: The latency in seconds, the rate limit's count, or the ambiguous chance.
        per: The rate limit's window: ``"second"`` or ``"hour"``.
    """

    kind: str
    start: float = 0.0
    duration: float | None = None
    value: float = 0.0
    per: Literal["second", "hour"] = "second"

    @property
    def end(self) -> float | None:
        """When it stops, in seconds into the run (None: at the end)."""
        return None if self.duration is None else self.start + self.duration

    @property
    def unavailable(self) -> bool:
        """Whether the instance answers nothing during this fault."""
        return self.kind in UNAVAILABLE

    def active(self, t: float) -> bool:
        """Whether it is in force `t` seconds into the run."""
        end = self.end
        return self.start <= t and (end is None or t < end)

    def fault(self) -> Fault:
        """The FakeServiceNow fault that carries it out."""
        if self.kind == "outage":
            return RefuseConnections()
        if self.kind == "hibernate":
            return Hibernating()
        if self.kind == "latency":
            return Latency(
                self.value, distribution="exponential", spread=self.value / 2, cap=self.value * 4
            )
        if self.kind == "rate-limit":
            return RateLimit(int(self.value), per=self.per)
        return DropResponse(commit=True)

    def describe(self) -> str:
        """A short human description, e.g. ``outage 30s-70s``."""
        what = {
            "outage": "outage (connections refused)",
            "hibernate": "instance hibernating",
            "latency": f"latency {self.value * 1000:g} ms",
            "rate-limit": f"rate limit {self.value:g}/{'s' if self.per == 'second' else 'h'}",
            "ambiguous": f"ambiguous commits {self.value:.0%} of creates",
        }[self.kind]
        end = self.end
        return f"{what} {self.start:g}s-{'end' if end is None else f'{end:g}s'}"


def parse_fault(kind: str, text: str) -> FaultSpec:
    """Parse one fault option's value.

    ``outage`` and ``hibernate`` take ``DURATION@START``. The others take a value, optionally
    followed by ``:DURATION@START`` (without it they last the whole run): ``latency`` a
    duration (``300ms``), ``rate-limit`` ``N/s`` or ``N/h``, ``ambiguous`` the chance (0-1]
    that a create is committed but its answer lost.

    Raises:
        ScenarioError: The value cannot be understood.
    """
    option = f"--{kind}"
    if kind in UNAVAILABLE:
        return FaultSpec(kind, *parse_window(text, what=option))
    if kind not in FAULT_KINDS:
        raise ScenarioError(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    value_text, colon, window = text.partition(":")
    start: float = 0.0
    duration: float | None = None
    if colon:
        start, duration = parse_window(window, what=option)
    if kind == "latency":
        value = parse_seconds(value_text, what=option)
        if value <= 0:
            raise ScenarioError(f"{option}: {value_text!r}: give a latency > 0, e.g. 300ms")
        return FaultSpec(kind, start, duration, value)
    if kind == "rate-limit":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(s|h)\s*", value_text)
        if not match or int(match[1]) < 1:
            raise ScenarioError(
                f"{option}: {value_text!r} is not a rate; give requests per second or per hour "
                "like 5/s or 3000/h"
            )
        per: Literal["second", "hour"] = "second" if match[2] == "s" else "hour"
        return FaultSpec(kind, start, duration, float(match[1]), per)
    try:
        chance = float(value_text)
    except ValueError:
        chance = math.nan
    if not 0 < chance <= 1:
        raise ScenarioError(
            f"{option}: {value_text!r} is not a chance; give a number in (0, 1], e.g. 0.2"
        )
    return FaultSpec(kind, start, duration, chance)


#: The most journal entries a scenario sends in one Batch API request.
MAX_PER_REQUEST: Final = 100


def check_per_request(value: object) -> int:
    """Return `value` if it can be a scenario's `per_request`, else raise `ScenarioError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PER_REQUEST:
        raise ScenarioError(f"per_request: give a whole number from 1 to {MAX_PER_REQUEST}")
    return value


#: The outage a run gets when no fault option is given.
DEFAULT_OUTAGE: Final = FaultSpec("outage", 30.0, 40.0)


#: How the simulated agents behave unless told otherwise.
DEFAULT_BEHAVIOUR: Final = AgentBehaviour(
    accept=0.8,
    reject=0.1,
    ring=Distribution.uniform(1.0, 5.0),
    talk=Distribution.exponential(15.0, minimum=5.0, cap=90.0),
    wrap_up=Distribution.uniform(2.0, 8.0),
    acknowledge=Distribution.uniform(2.0, 10.0),
    away=Distribution.uniform(15.0, 30.0),
)


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ScenarioError(f"{attribute.name}: give a number > 0")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ScenarioError(f"{attribute.name}: give a number >= 0")


@attrs.frozen
class Scenario:
    """Everything one run needs; the defaults ride through a 40 s outage in about 40 s.

    Attributes:
        seed: Seeds the arrivals, the agents and the fake's fault draws.
        speed: Virtual seconds per real second.
        duration: Seconds during which calls arrive.
        rate: Calls per second (a Poisson process).
        agents: How many agents, split between two scopes (regions).
        behaviour: How the agents answer, talk and wrap up.
        patience: Mean seconds a waiting caller holds on before hanging up (exponential).
        offer_timeout: Seconds an offer rings before the engine redirects it.
        wrap_up_time: The router's longest wrap-up; agents usually finish earlier.
        max_wait: Seconds a call may wait before it overflows (None: never).
        leave_after: Seconds the instance must stay healthy before a scope leaves
            resiliency mode (shorter than the engine's 60 s default, for the demo).
        faults: The fault schedule.
        journal: The SQLite journal file (None: one in a temporary folder).
        wind_down: Longest wait, after the arrivals stop, for the calls to finish.
        drain_timeout: Longest wait, after the faults are cleared, for the journal to drain.
        tick: Seconds between samples of the dashboard and the timeline.
        per_request: Journal entries the drainer sends in one HTTP request (1 to
            `MAX_PER_REQUEST`): 1 sends each as a Table API request of its own, more sends up
            to that many together through the Batch API (`DrainerConfig.per_request`).
    """

    seed: int = 1
    speed: float = attrs.field(default=4.0, validator=_positive)
    duration: float = attrs.field(default=120.0, validator=_positive)
    rate: float = attrs.field(default=0.35, validator=_positive)
    agents: int = attrs.field(default=16)
    behaviour: AgentBehaviour = DEFAULT_BEHAVIOUR
    patience: float = attrs.field(default=60.0, validator=_positive)
    offer_timeout: float = attrs.field(default=12.0, validator=_positive)
    wrap_up_time: float = attrs.field(default=10.0, validator=_non_negative)
    max_wait: float | None = 90.0
    leave_after: float = attrs.field(default=20.0, validator=_non_negative)
    faults: tuple[FaultSpec, ...] = (DEFAULT_OUTAGE,)
    journal: Path | None = None
    wind_down: float = attrs.field(default=300.0, validator=_positive)
    drain_timeout: float = attrs.field(default=300.0, validator=_positive)
    tick: float = attrs.field(default=0.5, validator=_positive)
    per_request: int = attrs.field(default=1)

    @agents.validator
    def _check_agents(self, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ScenarioError("agents: give a whole number >= 1")

    @per_request.validator
    def _check_per_request(self, attribute: attrs.Attribute[Any], value: int) -> None:
        check_per_request(value)

    def unavailable_at(self, t: float) -> bool:
        """Whether the instance is scheduled to answer nothing `t` seconds into the run."""
        return any(f.unavailable and f.active(t) for f in self.faults)

    def faulty_at(self, t: float) -> bool:
        """Whether any fault is scheduled `t` seconds into the run."""
        return any(f.active(t) for f in self.faults)

    def last_fault_end(self, cleared_at: float) -> float | None:
        """When the last fault stopped, given when the open-ended ones were cleared."""
        ends = [min(f.end if f.end is not None else cleared_at, cleared_at) for f in self.faults]
        ends = [max(end, f.start) for end, f in zip(ends, self.faults, strict=True)]
        return max(ends) if ends else None


@attrs.frozen
class Arrival:
    """One scripted caller: when they call and how long they would wait."""

    call_id: str
    at: float
    patience: float


def arrivals(scenario: Scenario) -> list[Arrival]:
    """The callers of a scenario: Poisson arrivals over `duration`, seeded."""
    rng = random.Random(f"{scenario.seed}:arrivals")
    out: list[Arrival] = []
    t = rng.expovariate(scenario.rate)
    while t < scenario.duration:
        patience = rng.expovariate(1.0 / scenario.patience)
        out.append(Arrival(f"sim-{scenario.seed}-{len(out) + 1:04d}", round(t, 3), patience))
        t += rng.expovariate(scenario.rate)
    return out


def fault_lines(faults: Sequence[FaultSpec]) -> list[str]:
    """One description per fault, in start order."""
    return [f.describe() for f in sorted(faults, key=lambda f: f.start)] or ["no faults"]
