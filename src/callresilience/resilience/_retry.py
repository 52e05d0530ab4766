"""Retrying in process, on tenacity, wrapped the way stamina wraps it.

No tenacity type escapes: callers get `retrying()` and `Attempt`. The wait between attempts is
`Backoff.wait`, which honours the `retry_after` that ServiceNow errors carry; the sleep is the
injected clock's, so tests with a manual clock never wait.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable
from types import TracebackType

import tenacity as _t

from .._clock import Clock
from .._errors import ServiceNowError
from ._backoff import Backoff

__all__ = ["Attempt", "retrying"]


class Attempt:
    """One attempt: use it as a context manager around the work.

    Attributes:
        number: 1 for the first attempt, 2 for the first retry...
    """

    def __init__(self, manager: _t.AttemptManager) -> None:
        self._manager = manager
        self.number: int = manager.retry_state.attempt_number

    def __enter__(self) -> Attempt:
        self._manager.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return self._manager.__exit__(kind, error, traceback)

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


async def retrying(
    *,
    retry_on: Callable[[BaseException], bool],
    clock: Clock,
    attempts: int = 3,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
) -> AsyncGenerator[Attempt, None]:
    """Yield attempts until one succeeds, an error is not retryable, or attempts run out.

    The last error is raised as it is (tenacity's ``reraise=True``)::

        async for attempt in retrying(retry_on=is_transient, clock=clock):
            with attempt:
                await client.create(...)

    Args:
        retry_on: Whether an error deserves another attempt.
        clock: Whose `sleep` waits between attempts.
        attempts: The most attempts, the first included.
        backoff: The waits; `retry_after` on a `ServiceNowError` takes precedence.
        rng: The jitter's random source.
    """
    policy = backoff or Backoff()
    jitter = rng or random.Random()

    def wait(state: _t.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, ServiceNowError) else None
        return policy.wait(state.attempt_number, jitter, retry_after)

    controller = _t.AsyncRetrying(
        stop=_t.stop_after_attempt(attempts),
        wait=wait,
        retry=_t.retry_if_exception(retry_on),
        sleep=clock.sleep,
        reraise=True,
    )
    async for manager in controller:
        yield Attempt(manager)
