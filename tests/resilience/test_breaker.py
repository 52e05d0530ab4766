"""The circuit breaker: resilience4j's transitions, on a time passed in, never the wall clock."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from callresilience import InvalidInput
from callresilience.resilience import (
    BreakerConfig,
    BreakerState,
    BreakerStateChanged,
    CircuitBreaker,
)

CONFIG = BreakerConfig(
    failure_rate=0.5, window=4, minimum_calls=4, open_wait=10, probes=2, max_half_open_wait=30
)
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def opened(at: float = 0.0) -> CircuitBreaker:
    """A breaker that opened at `at` after two failures in four calls."""
    breaker = CircuitBreaker("https://a.example", CONFIG)
    for ok in (True, False, True):
        (breaker.record_success if ok else breaker.record_failure)(at)
    assert breaker.record_failure(at)[0].new is OPEN
    return breaker


def test_stays_closed_until_minimum_calls_are_seen() -> None:
    """Three failures out of three calls do not open it: the minimum is four."""
    breaker = CircuitBreaker("a", CONFIG)
    assert [breaker.record_failure(0) for _ in range(3)] == [[], [], []]
    assert breaker.failure_rate is None
    assert breaker.allow_request(0)


def test_opens_when_the_failure_rate_reaches_the_threshold() -> None:
    """Two failures in a window of four (50%) open it, with an event saying why."""
    breaker = CircuitBreaker("a", CONFIG)
    breaker.record_success(0)
    breaker.record_success(0)
    breaker.record_failure(0)
    (event,) = breaker.record_failure(1)
    assert event == BreakerStateChanged("a", CLOSED, OPEN, 1, "failure rate 50%")
    assert not breaker.allow_request(1)
    assert breaker.open_until == 11


def test_window_slides_so_old_failures_are_forgotten() -> None:
    """Only the last `window` calls count."""
    breaker = CircuitBreaker("a", CONFIG)
    breaker.record_failure(0)
    for _ in range(4):
        breaker.record_success(0)
    assert breaker.failure_rate == 0
    assert breaker.record_failure(0) == []
    assert breaker.failure_rate == 0.25


def test_after_the_open_wait_only_probes_are_allowed() -> None:
    """Half-open: ordinary requests stay held, up to `probes` probes may go."""
    breaker = opened()
    assert breaker.state(9.9) is OPEN
    assert breaker.allow_probe(9.9) == (False, [])
    assert breaker.state(10) is HALF_OPEN
    assert not breaker.allow_request(10)
    allowed, events = breaker.allow_probe(10)
    assert allowed
    assert [e.new for e in events] == [HALF_OPEN]
    assert breaker.allow_probe(10)[0]
    assert breaker.allow_probe(10) == (False, [])


def test_successful_probes_close_it() -> None:
    """`probes` successful probes close the breaker; the next request may go."""
    breaker = opened()
    breaker.allow_probe(10)
    breaker.allow_probe(10)
    assert breaker.record_success(11, probe=True) == []
    (event,) = breaker.record_success(12, probe=True)
    assert (event.old, event.new, event.reason) == (HALF_OPEN, CLOSED, "probes succeeded")
    assert breaker.allow_request(12)


def test_a_failed_probe_opens_it_again_for_a_full_wait() -> None:
    """One failed probe re-opens the breaker, counting the wait from the failure."""
    breaker = opened()
    breaker.allow_probe(10)
    (event,) = breaker.record_failure(11, probe=True, reason="timed out")
    assert (event.new, event.reason) == (OPEN, "probe timed out")
    assert breaker.state(20.9) is OPEN
    assert breaker.state(21) is HALF_OPEN


def test_half_open_too_long_opens_it_again() -> None:
    """Probes that never finish do not leave the breaker half-open forever."""
    breaker = opened()
    breaker.allow_probe(10)
    breaker.allow_probe(10)
    allowed, events = breaker.allow_probe(40)
    assert not allowed
    assert [(e.new, e.reason) for e in events] == [(OPEN, "probes did not succeed in time")]


def test_hold_keeps_it_open_until_the_instance_said() -> None:
    """A long Retry-After holds every request until it is over, then probing starts."""
    breaker = CircuitBreaker("a", CONFIG)
    (event,) = breaker.hold(0, 120, "429: hourly quota used")
    assert (event.new, event.reason) == (OPEN, "429: hourly quota used")
    assert breaker.hold(5, 30, "shorter") == []
    assert breaker.state(119) is OPEN
    assert breaker.state(120) is HALF_OPEN


def test_forced_open_stays_open_until_reset() -> None:
    """An operator's force_open ignores the open wait; reset closes and forgets."""
    breaker = CircuitBreaker("a", CONFIG)
    assert breaker.force_open(0)[0].new is OPEN
    assert breaker.force_open(1) == []
    assert breaker.state(10_000) is OPEN
    assert breaker.reset(10_000)[0].new is CLOSED
    assert breaker.reset(10_001) == []
    assert breaker.allow_request(10_001)


def test_successes_and_failures_while_open_change_nothing() -> None:
    """Late answers to requests sent before the breaker opened do not move it."""
    breaker = opened()
    assert breaker.record_success(1) == []
    assert breaker.record_failure(2) == []
    assert breaker.state(2) is OPEN


@pytest.mark.parametrize(
    "kwargs", [{"failure_rate": 0}, {"failure_rate": 1.5}, {"window": 0}, {"open_wait": -1}]
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Settings outside their range raise InvalidInput."""
    with pytest.raises(InvalidInput):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


LEGAL = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}


class BreakerMachine(RuleBasedStateMachine):
    """Random outcomes and time steps: only legal transitions, no request while not closed."""

    def __init__(self) -> None:
        super().__init__()
        self.breaker = CircuitBreaker("a", CONFIG)
        self.now = 0.0
        self.probes_out = 0
        self.events: list[BreakerStateChanged] = []

    @rule(ok=st.booleans())
    def request(self, ok: bool) -> None:
        if self.breaker.allow_request(self.now):
            method = self.breaker.record_success if ok else self.breaker.record_failure
            self.events += method(self.now)

    @rule(ok=st.booleans())
    def probe(self, ok: bool) -> None:
        allowed, events = self.breaker.allow_probe(self.now)
        self.events += events
        if allowed:
            assert self.breaker.state(self.now) is HALF_OPEN
            method = self.breaker.record_success if ok else self.breaker.record_failure
            self.events += method(self.now, probe=True)

    @rule(step=st.floats(0, 20))
    def wait(self, step: float) -> None:
        self.now += step

    @rule(seconds=st.floats(0, 50))
    def rate_limited(self, seconds: float) -> None:
        self.events += self.breaker.hold(self.now, seconds, "429")

    @invariant()
    def only_legal_transitions_in_order(self) -> None:
        previous = CLOSED
        for event in self.events:
            assert event.old is previous
            assert (event.old, event.new) in LEGAL
            previous = event.new

    @invariant()
    def failure_rate_is_a_share(self) -> None:
        rate = self.breaker.failure_rate
        assert rate is None or 0 <= rate <= 1


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40)
TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.__doc__ = "Random sequences keep the breaker's transitions legal."
