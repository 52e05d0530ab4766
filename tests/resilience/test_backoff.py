"""Backoff: exponential ceilings with full jitter, and Retry-After honoured within a cap."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callresilience import InvalidInput
from callresilience.resilience import Backoff


def test_ceilings_double_up_to_the_cap() -> None:
    """The n-th retry's ceiling is initial * multiplier**(n-1), never above the cap."""
    backoff = Backoff(initial=0.5, multiplier=2, cap=4)
    assert [backoff.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.ceiling(10_000) == 4.0


@given(retry=st.integers(1, 10_000), seed=st.integers())
def test_waits_stay_between_zero_and_the_ceiling(retry: int, seed: int) -> None:
    """Full jitter: every wait is in [0, ceiling]."""
    backoff = Backoff()
    wait = backoff.wait(retry, random.Random(seed))
    assert 0 <= wait <= backoff.ceiling(retry)


def test_full_jitter_spreads_the_waits() -> None:
    """Many waits for the same retry spread over the whole range, not a single value."""
    backoff = Backoff(initial=8, cap=8)
    rng = random.Random(1)
    waits = [backoff.wait(1, rng) for _ in range(1_000)]
    assert min(waits) < 1
    assert max(waits) > 7


@given(retry_after=st.floats(0, 10_000), seed=st.integers())
def test_retry_after_is_obeyed_and_capped(retry_after: float, seed: int) -> None:
    """A Retry-After is waited out (plus at most 10%, at most 1 s) and capped."""
    backoff = Backoff(max_retry_after=120)
    wait = backoff.wait(1, random.Random(seed), retry_after)
    wanted = min(retry_after, 120)
    assert wanted <= wait <= wanted + min(1.0, wanted * 0.1)


def test_durations_accept_timedelta_and_refuse_nonsense() -> None:
    """Durations take seconds or a timedelta; zero or negative values are refused."""
    assert Backoff(cap=timedelta(minutes=1)).cap == 60.0
    with pytest.raises(InvalidInput, match="initial"):
        Backoff(initial=0)
