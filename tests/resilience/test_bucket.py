"""The token bucket paces requests, and learns the instance's rate from 429s."""

from __future__ import annotations

import pytest

from callresilience import InvalidInput
from callresilience.resilience import TokenBucket


def test_fixed_rate_spaces_requests_after_the_burst() -> None:
    """A fixed bucket lets `burst` go at once, then one request per 1/rate seconds."""
    bucket = TokenBucket(rate=10, burst=2, learn=False)
    waits = [bucket.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])


def test_tokens_refill_with_time_up_to_the_burst() -> None:
    """Idle time refills the bucket, never beyond `burst`."""
    bucket = TokenBucket(rate=10, burst=3, learn=False)
    for _ in range(3):
        bucket.reserve(0.0)
    assert bucket.reserve(100.0) == 0.0
    assert [bucket.reserve(100.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_a_fixed_rate_is_never_learned() -> None:
    """With learn=False, 429s and waiting do not change the rate."""
    bucket = TokenBucket(rate=10, learn=False)
    for _ in range(100):
        bucket.reserve(0.0)
    bucket.record_rate_limited(0.0)
    assert bucket.rate == 10


def simulate(limit: int, seconds: int, bucket: TokenBucket) -> tuple[int, int]:
    """Drain an endless backlog through `bucket` into a limit of `limit` per whole second.

    Returns the requests accepted and the 429s, on virtual time.
    """
    now, accepted, denied = 0.0, 0, 0
    window, used = 0, 0
    while now < seconds:
        now += bucket.reserve(now)
        if int(now) != window:
            window, used = int(now), 0
        if used < limit:
            used += 1
            accepted += 1
            bucket.record_success(now)
        else:
            denied += 1
            bucket.record_rate_limited(now)
    return accepted, denied


def test_learning_finds_a_per_second_limit_without_a_storm_of_429s() -> None:
    """Against 200/s the learned rate reaches over 90% of the limit with under 1% 429s."""
    accepted, denied = simulate(200, 120, TokenBucket())
    assert accepted / (200 * 120) >= 0.9
    assert denied / (accepted + denied) < 0.01


def test_learning_starts_slowly_and_grows_while_it_is_the_bottleneck() -> None:
    """Slow start: the rate grows while requests wait on it, and stops at max_rate."""
    bucket = TokenBucket(rate=20, max_rate=50)
    now = 0.0
    for _ in range(2_000):
        now += bucket.reserve(now)
    assert bucket.rate == 50


def test_bad_settings_are_refused() -> None:
    """Rates must be finite and positive."""
    with pytest.raises(InvalidInput, match="rate"):
        TokenBucket(rate=0)
