"""In-process retries on tenacity: Retry-After honoured, the last error re-raised, no real sleep."""

from __future__ import annotations

import random

import pytest

from callresilience import PermanentError, RateLimited, TransientError
from callresilience.resilience import Backoff, retrying
from callresilience.testing import ManualClock


def transient(error: BaseException) -> bool:
    return isinstance(error, TransientError)


@pytest.mark.anyio
async def test_retries_transient_errors_then_succeeds() -> None:
    """Two transient failures, then success: three attempts, waits on the injected clock."""
    clock = ManualClock(autojump=True)
    outcomes: list[Exception | None] = [TransientError("503"), TransientError("503"), None]
    numbers = []
    async for attempt in retrying(retry_on=transient, clock=clock, attempts=5):
        with attempt:
            numbers.append(attempt.number)
            outcome = outcomes.pop(0)
            if outcome:
                raise outcome
    assert numbers == [1, 2, 3]
    assert 0 < clock.now() <= Backoff().ceiling(1) + Backoff().ceiling(2)


@pytest.mark.anyio
async def test_retry_after_sets_the_wait() -> None:
    """A RateLimited error's retry_after is waited out before the next attempt."""
    clock = ManualClock(autojump=True)
    calls = 0
    async for attempt in retrying(retry_on=transient, clock=clock, rng=random.Random(0)):
        with attempt:
            calls += 1
            if calls == 1:
                raise RateLimited("429", status_code=429, retry_after=30)
    assert 30 <= clock.now() <= 31


@pytest.mark.anyio
async def test_permanent_errors_are_not_retried() -> None:
    """An error that retry_on refuses is raised at once, as it is."""
    clock = ManualClock(autojump=True)

    async def refused() -> None:
        async for attempt in retrying(retry_on=transient, clock=clock):
            with attempt:
                raise PermanentError("400")

    with pytest.raises(PermanentError, match="400"):
        await refused()
    assert clock.now() == 0


@pytest.mark.anyio
async def test_last_error_is_reraised_when_attempts_run_out() -> None:
    """After the last attempt the real error escapes, not a tenacity type."""
    clock = ManualClock(autojump=True)
    seen: list[str] = []

    async def failing() -> None:
        async for attempt in retrying(retry_on=transient, clock=clock, attempts=3):
            with attempt:
                seen.append(repr(attempt))
                raise TransientError(["first", "second", "third"][len(seen) - 1])

    with pytest.raises(TransientError, match="third"):
        await failing()
    assert seen == ["<Attempt 1>", "<Attempt 2>", "<Attempt 3>"]
