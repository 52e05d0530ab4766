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


def test_a_per_second_limit_in_the_headers_caps_the_rate_before_any_429() -> None:
    """X-RateLimit-Limit with a window resetting within 2 s caps the rate just under it."""
    bucket = TokenBucket(rate=50)
    bucket.observe_limit(200, window_left=0.4)
    now = 0.0
    for _ in range(5_000):
        now += bucket.reserve(now)
    assert bucket.rate == pytest.approx(194.0)


def test_an_hourly_limit_in_the_headers_does_not_cap_the_rate() -> None:
    """An hourly rule (a reset far away) is left to 429s and Retry-After."""
    bucket = TokenBucket(rate=50)
    bucket.observe_limit(10_000, window_left=1_800)
    now = 0.0
    for _ in range(5_000):
        now += bucket.reserve(now)
    assert bucket.rate > 1_000


def test_a_429_below_a_known_limit_lowers_the_ceiling() -> None:
    """Another client sharing the quota shows up as 429s under the header's limit."""
    bucket = TokenBucket(rate=500)
    bucket.observe_limit(100, window_left=0.5)
    assert bucket.rate == pytest.approx(97)
    bucket.record_rate_limited(10.0)
    assert bucket.rate == pytest.approx(97 * 0.95)


def test_a_per_second_ceiling_is_lifted_once_answers_stop_announcing_it() -> None:
    """After 5 s of answers without the headers the ceiling goes and slow start resumes."""
    bucket = TokenBucket(rate=50.0)
    bucket.observe_limit(2, 0.5, now=100.0)
    assert bucket.rate == pytest.approx(1.94)
    bucket.no_limit_seen(104.0)  # too soon: the rule may just be between answers
    for second in range(5):
        bucket.reserve(100.0 + second)
    assert bucket.rate <= 1.94
    bucket.no_limit_seen(105.0)
    for step in range(50):
        bucket.reserve(105.0 + step * 0.01)
    assert bucket.rate > 10
