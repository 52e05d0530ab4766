"""A circuit breaker per instance endpoint, with resilience4j's semantics and `now` passed in.

States and transitions, as a table (the only ones allowed)::

    CLOSED     failure rate >= threshold over the window (after minimum calls)    OPEN
    CLOSED     hold(seconds): the instance said when to come back                  OPEN
    OPEN       open_wait (or the hold) is over                                     HALF_OPEN
    HALF_OPEN  `probes` probes succeeded                                           CLOSED
    HALF_OPEN  a probe failed, or max_half_open_wait passed                        OPEN
    any        force_open() / reset()                                              OPEN / CLOSED

While OPEN nothing is sent. While HALF_OPEN only probes are sent: cheap reads, never journal
entries, so a half-recovered instance is tested without risking a record. The breaker reads no
clock and does no I/O; every method takes `now` (monotonic seconds) and returns the events its
call caused.
"""

from __future__ import annotations

import collections
import enum
from typing import Any

import attrs

from .._errors import InvalidInput
from .._validators import as_seconds, at_least_one, seconds_at_least_zero

__all__ = ["BreakerConfig", "BreakerState", "BreakerStateChanged", "CircuitBreaker"]


class BreakerState(enum.Enum):
    """Whether requests may go to the endpoint."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 < value <= 1:
        raise InvalidInput(f"{attribute.name}: give a fraction in (0, 1]", field=attribute.name)


@attrs.frozen
class BreakerConfig:
    """When the breaker opens and how it comes back.

    The defaults are smaller than resilience4j's (window 100, minimum 100, wait 60 s) because a
    contact center sends a few requests a second, not thousands: an outage should be seen
    within seconds.

    Attributes:
        failure_rate: The share of failed calls in the window that opens the breaker.
        window: How many of the most recent calls are judged (a count-based window).
        minimum_calls: Calls needed in the window before the rate is judged at all.
        open_wait: How long the breaker stays open before probing.
        probes: Successful probes needed in half-open to close.
        max_half_open_wait: The longest time in half-open; if the probes have not all
            succeeded by then, the breaker opens again (0: no limit).
    """

    failure_rate: float = attrs.field(default=0.5, validator=_fraction)
    window: int = attrs.field(default=20, validator=at_least_one)
    minimum_calls: int = attrs.field(default=5, validator=at_least_one)
    open_wait: float = attrs.field(
        default=10.0, converter=as_seconds, validator=seconds_at_least_zero
    )
    probes: int = attrs.field(default=2, validator=at_least_one)
    max_half_open_wait: float = attrs.field(
        default=30.0, converter=as_seconds, validator=seconds_at_least_zero
    )


@attrs.frozen
class BreakerStateChanged:
    """The breaker of `endpoint` moved from `old` to `new` at `at`, because of `reason`."""

    endpoint: str
    old: BreakerState
    new: BreakerState
    at: float
    reason: str


@attrs.define
class CircuitBreaker:
    """The breaker of one endpoint. See the module docstring for the transitions.

    Attributes:
        endpoint: What the breaker guards (a base URL), for events and logs.
        config: The thresholds and waits.
    """

    endpoint: str
    config: BreakerConfig = attrs.field(factory=BreakerConfig)
    _state: BreakerState = attrs.field(default=BreakerState.CLOSED, init=False)
    _outcomes: collections.deque[bool] = attrs.field(init=False)
    _failures: int = attrs.field(default=0, init=False)
    _open_until: float = attrs.field(default=0.0, init=False)
    _half_open_since: float = attrs.field(default=0.0, init=False)
    _probes_out: int = attrs.field(default=0, init=False)
    _probes_ok: int = attrs.field(default=0, init=False)
    _forced: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._outcomes = collections.deque(maxlen=self.config.window)

    # -- reading ---------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        """Return the state at `now`, counting an open wait that has run out as half-open."""
        if self._state is BreakerState.OPEN and not self._forced and now >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def calls(self) -> int:
        """How many outcomes the sliding window holds now."""
        return len(self._outcomes)

    @property
    def failure_rate(self) -> float | None:
        """The failure share of the window, or None before `minimum_calls` calls."""
        if len(self._outcomes) < self.config.minimum_calls:
            return None
        return self._failures / len(self._outcomes)

    @property
    def open_until(self) -> float | None:
        """When an open breaker starts probing, or None when it is not open."""
        return self._open_until if self._state is BreakerState.OPEN else None

    # -- asking ----------------------------------------------------------------------------

    def allow_request(self, now: float) -> bool:
        """Whether an ordinary request (a journal entry) may be sent now."""
        return self.state(now) is BreakerState.CLOSED

    def allow_probe(self, now: float) -> tuple[bool, list[BreakerStateChanged]]:
        """Whether a probe may be sent now; reserve it if so.

        Returns:
            Whether to send a probe, and the events of any transition this caused.
        """
        events = self._tick(now)
        if self._state is not BreakerState.HALF_OPEN:
            return False, events
        if self._probes_out + self._probes_ok >= self.config.probes:
            return False, events
        self._probes_out += 1
        return True, events

    # -- telling ---------------------------------------------------------------------------

    def record_success(self, now: float, *, probe: bool = False) -> list[BreakerStateChanged]:
        """Record a call or probe that the instance answered (any answer but a failure)."""
        events = self._tick(now)
        if probe and self._state is BreakerState.HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)
            self._probes_ok += 1
            if self._probes_ok >= self.config.probes:
                events += self._move(BreakerState.CLOSED, now, "probes succeeded")
            return events
        if self._state is BreakerState.CLOSED:
            self._push(ok=True)
        return events

    def record_failure(
        self, now: float, *, probe: bool = False, reason: str = "failure"
    ) -> list[BreakerStateChanged]:
        """Record a failed call or probe (no answer, a 5xx, an HTML page...)."""
        events = self._tick(now)
        if self._state is BreakerState.HALF_OPEN:
            if probe:
                self._probes_out = max(0, self._probes_out - 1)
            return events + self._open(now, self.config.open_wait, f"probe {reason}")
        if self._state is BreakerState.CLOSED:
            self._push(ok=False)
            rate = self.failure_rate
            if rate is not None and rate >= self.config.failure_rate:
                events += self._open(now, self.config.open_wait, f"failure rate {rate:.0%}")
        return events

    def hold(self, now: float, seconds: float, reason: str) -> list[BreakerStateChanged]:
        """Open (or keep open) for at least `seconds`: the instance said when to come back."""
        events = self._tick(now)
        until = now + max(0.0, seconds)
        if self._state is BreakerState.OPEN:
            self._open_until = max(self._open_until, until)
            return events
        return events + self._open(now, max(0.0, seconds), reason)

    def force_open(self, now: float) -> list[BreakerStateChanged]:
        """Open until `reset()`, whatever happens (an operator's switch)."""
        self._forced = True
        if self._state is BreakerState.OPEN:
            return []
        return self._move(BreakerState.OPEN, now, "forced open")

    def reset(self, now: float) -> list[BreakerStateChanged]:
        """Close and forget the window (an operator's switch)."""
        self._forced = False
        self._outcomes.clear()
        self._failures = 0
        if self._state is BreakerState.CLOSED:
            return []
        return self._move(BreakerState.CLOSED, now, "reset")

    # -- inside ----------------------------------------------------------------------------

    def _tick(self, now: float) -> list[BreakerStateChanged]:
        """Make the time-driven transitions that are due at `now`."""
        if self._state is BreakerState.OPEN and not self._forced and now >= self._open_until:
            return self._move(BreakerState.HALF_OPEN, now, "open wait over")
        limit = self.config.max_half_open_wait
        if (
            self._state is BreakerState.HALF_OPEN
            and limit > 0
            and now - self._half_open_since >= limit
        ):
            return self._open(now, self.config.open_wait, "probes did not succeed in time")
        return []

    def _push(self, *, ok: bool) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and not outcomes[0]:
            self._failures -= 1
        outcomes.append(ok)
        if not ok:
            self._failures += 1

    def _open(self, now: float, wait: float, reason: str) -> list[BreakerStateChanged]:
        self._open_until = now + wait
        return self._move(BreakerState.OPEN, now, reason)

    def _move(self, new: BreakerState, now: float, reason: str) -> list[BreakerStateChanged]:
        old = self._state
        self._state = new
        self._probes_out = self._probes_ok = 0
        if new is BreakerState.HALF_OPEN:
            self._half_open_since = now
        if new is not BreakerState.CLOSED:
            self._outcomes.clear()
            self._failures = 0
        return [BreakerStateChanged(self.endpoint, old, new, now, reason)]
