"""The pure fault core: decisions, rate-limit accounting and the schedule."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from callresilience.testing import (
    BlackHole,
    BrokenOk,
    Decision,
    DropResponse,
    ExpireTokens,
    Fault,
    FaultSchedule,
    Hibernating,
    Latency,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ScheduledFault,
    ServiceUnavailable,
    TransactionCancelled,
    decide,
)


def entry(fault: Fault, *, start: float = 0.0, **options: Any) -> ScheduledFault:
    """A scheduled fault with id 1, starting at `start`."""
    return ScheduledFault(1, fault, start, **options)


def run(
    *entries: ScheduledFault, now: float = 0.0, method: str = "GET", table: str | None = "x"
) -> Decision:
    """Decide for one request with a fresh seeded rng."""
    return decide(entries, method=method, table=table, now=now, rng=random.Random(0))


def test_no_fault_decides_nothing() -> None:
    """With nothing scheduled a request goes through untouched."""
    assert run() == Decision()


def test_a_fault_applies_only_inside_its_window() -> None:
    """The window includes its start and excludes its end."""
    outage = entry(ServiceUnavailable(), start=10.0, end=30.0)
    assert run(outage, now=9.99).instance is None
    assert run(outage, now=10.0).instance == ServiceUnavailable()
    assert run(outage, now=30.0).instance is None


def test_methods_and_tables_scope_a_fault() -> None:
    """A scoped fault ignores other methods and tables; a table scope skips the token endpoint."""
    scoped = entry(DropResponse(), methods=["post"], tables=["interaction"])
    assert run(scoped, method="POST", table="interaction").processing == DropResponse()
    assert run(scoped, method="GET", table="interaction").processing is None
    assert run(scoped, method="POST", table="sys_user").processing is None
    assert run(scoped, method="POST", table=None).processing is None
    assert run(entry(DropResponse()), method="POST", table=None).processing == DropResponse()


def test_probability_draws_from_the_seeded_rng() -> None:
    """A 30% fault fires on roughly 30% of requests, identically for the same seed."""
    flaky = entry(ServiceUnavailable(), probability=0.3)

    def outcomes(seed: int) -> list[bool]:
        rng = random.Random(seed)
        return [
            decide([flaky], method="GET", table="t", now=0.0, rng=rng).instance is not None
            for _ in range(1000)
        ]

    assert outcomes(7) == outcomes(7)
    assert 250 < sum(outcomes(7)) < 350


def test_a_certain_fault_consumes_no_randomness() -> None:
    """Probability 1 never draws, so adding one does not shift the other draws."""
    rng = random.Random(3)
    decide([entry(BrokenOk())], method="GET", table="t", now=0.0, rng=rng)
    assert rng.random() == random.Random(3).random()


def test_stages_order_and_first_wins_within_a_stage() -> None:
    """Connection faults, instance faults and processing faults are kept apart; first wins."""
    decision = run(
        entry(TransactionCancelled()),
        entry(BlackHole()),
        entry(RefuseConnections()),
        entry(Hibernating()),
        entry(ServiceUnavailable()),
        entry(BrokenOk()),
        entry(ExpireTokens()),
    )
    assert decision.connection == BlackHole()
    assert decision.instance == Hibernating()
    assert decision.processing == TransactionCancelled()
    assert decision.expire_tokens


def test_latencies_add_up() -> None:
    """Several latency faults add their delays."""
    assert run(entry(Latency(0.5)), entry(Latency(1.5))).latency == 2.0


def test_latency_distributions() -> None:
    """Uniform stays in its band, exponential has its mean, and the cap bounds both."""
    rng = random.Random(1)
    uniform = [Latency(1.0, distribution="uniform", spread=2.0).sample(rng) for _ in range(500)]
    assert all(1.0 <= d <= 3.0 for d in uniform)
    exponential = [
        Latency(0.0, distribution="exponential", spread=2.0).sample(rng) for _ in range(4000)
    ]
    assert 1.8 < sum(exponential) / len(exponential) < 2.2
    capped = Latency(0.0, distribution="exponential", spread=5.0, cap=1.0)
    assert max(capped.sample(rng) for _ in range(500)) == 1.0
    assert Latency(0.5, distribution="exponential").sample(rng) == 0.5


def test_fault_values_validate_their_fields() -> None:
    """Bad options are refused when the fault is built."""
    with pytest.raises(ValueError, match="seconds"):
        Latency(-1.0)
    with pytest.raises(ValueError, match="distribution"):
        Latency(1.0, distribution="normal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        RateLimit(0)
    with pytest.raises(ValueError, match="probability"):
        ScheduledFault(1, BrokenOk(), 0.0, probability=1.5)


def test_rate_limit_allows_the_limit_then_denies_until_the_window_resets() -> None:
    """N requests per hour pass with headers; the next gets Retry-After to the hour's end."""
    clock = ManualClock(epoch=1_767_225_600.0)  # on the hour
    schedule = FaultSchedule(clock)
    rule = RateLimit(2)
    schedule.add(rule)
    first = schedule.check_rate_limits(method="GET", table="t")
    assert first is not None
    assert first.allowed
    assert first.headers() == [
        ("X-RateLimit-Limit", "2"),
        ("X-RateLimit-Reset", "1767229200"),
        ("X-RateLimit-Rule", rule.rule_sys_id),
    ]
    clock.advance(600)
    assert schedule.check_rate_limits(method="POST", table="t").allowed  # type: ignore[union-attr]
    denied = schedule.check_rate_limits(method="GET", table="t")
    assert denied is not None
    assert not denied.allowed
    assert denied.retry_after == 3000
    assert denied.headers()[0] == ("Retry-After", "3000")
    assert denied.detail() == "Rate limit of 2 requests per hour for Table API exceeded"
    clock.advance(3000)
    assert schedule.check_rate_limits(method="GET", table="t").allowed  # type: ignore[union-attr]


def test_per_second_rate_limit_and_denied_requests_do_not_count() -> None:
    """A per-second rule resets each second; denials use no quota."""
    clock = ManualClock()
    schedule = FaultSchedule(clock)
    schedule.add(RateLimit(1, per="second"))
    verdicts = [schedule.check_rate_limits(method="GET", table="t") for _ in range(3)]
    assert [v.allowed for v in verdicts if v] == [True, False, False]
    assert verdicts[1] is not None
    assert verdicts[1].retry_after == 1
    assert "per second" in verdicts[1].detail()
    clock.advance(1.0)
    assert schedule.check_rate_limits(method="GET", table="t").allowed  # type: ignore[union-attr]


def test_a_request_counts_against_every_rule_only_when_all_allow_it() -> None:
    """With two rules the tighter one denies and the looser one is not charged."""
    schedule = FaultSchedule(ManualClock())
    schedule.add(RateLimit(1, rule_sys_id="a" * 32), tables={"t"})
    schedule.add(RateLimit(100, rule_sys_id="b" * 32))
    assert schedule.check_rate_limits(method="GET", table="other").rule.limit == 100  # type: ignore[union-attr]
    assert schedule.check_rate_limits(method="GET", table="t").allowed  # type: ignore[union-attr]
    denied = schedule.check_rate_limits(method="GET", table="t")
    assert denied is not None
    assert not denied.allowed
    assert denied.rule.rule_sys_id == "a" * 32
    assert schedule.check_rate_limits(method="GET", table="nothing-matches") is not None
    schedule.clear()
    assert schedule.check_rate_limits(method="GET", table="t") is None


def test_rate_limits_are_not_part_of_decide() -> None:
    """decide() leaves rate limits to check_rate_limits()."""
    assert run(entry(RateLimit(1))) == Decision()


def test_schedule_windows_start_now_after_a_delay_or_at_a_time() -> None:
    """add() takes start (absolute), after (relative) or neither (now), and a duration."""
    clock = ManualClock(start=100.0)
    schedule = FaultSchedule(clock)
    assert schedule.add(BrokenOk()).start == 100.0
    assert schedule.add(BrokenOk()).end == math.inf
    delayed = schedule.add(BrokenOk(), after=10, duration=20)
    assert (delayed.start, delayed.end) == (110.0, 130.0)
    at = schedule.add(BrokenOk(), start=5.0, duration=1.0)
    assert (at.start, at.end) == (5.0, 6.0)
    with pytest.raises(ValueError, match="not both"):
        schedule.add(BrokenOk(), start=1.0, after=1.0)
    with pytest.raises(ValueError, match="negative"):
        schedule.add(BrokenOk(), duration=-1.0)


def test_schedule_can_change_while_running_and_tells_listeners() -> None:
    """add, remove and clear change the entries and notify subscribers."""
    clock = ManualClock()
    schedule = FaultSchedule(clock)
    changes: list[int] = []
    unsubscribe = schedule.subscribe(lambda: changes.append(len(schedule.entries)))
    outage = schedule.add(ServiceUnavailable(), start=10.0, duration=20.0)
    clock.advance(15.0)
    assert schedule.decide(method="GET", table="t", rng=random.Random()).instance is not None
    schedule.remove(outage)
    schedule.remove(outage)
    assert schedule.decide(method="GET", table="t", rng=random.Random()).instance is None
    schedule.add(BrokenOk())
    schedule.clear()
    unsubscribe()
    schedule.add(BrokenOk())
    assert changes == [1, 0, 0, 1, 0]


def test_only_an_unconditional_refusal_closes_the_listener() -> None:
    """refusing_connections() ignores filtered or probabilistic refusals."""
    schedule = FaultSchedule(ManualClock())
    schedule.add(RefuseConnections(), methods={"POST"})
    schedule.add(RefuseConnections(), probability=0.5)
    schedule.add(BlackHole())
    assert not schedule.refusing_connections(0.0)
    schedule.add(RefuseConnections(), start=10.0, duration=5.0)
    assert not schedule.refusing_connections(9.0)
    assert schedule.refusing_connections(10.0)
    assert not schedule.refusing_connections(15.0)
