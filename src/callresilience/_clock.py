"""The one clock abstraction: every component that needs time takes a `Clock`.

Pure cores never read a clock; they take `now` as an argument. The async shell asks its
injected clock, so tests swap in `callresilience.testing.ManualClock` and never sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["Clock", "SystemClock"]

_T = TypeVar("_T")


@runtime_checkable
class Clock(Protocol):
    """Where time comes from.

    `now()` is monotonic seconds, for deadlines and durations; `time()` is UNIX seconds, for
    timestamps written to ServiceNow.
    """

    def now(self) -> float:
        """Return monotonic seconds."""
        ...

    def time(self) -> float:
        """Return seconds since the UNIX epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.time` and `asyncio.sleep`."""

    def now(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()

    def time(self) -> float:
        """Return `time.time()`."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> None:
    """Wait `seconds` on `clock`, or less if `wake` is set first (it is cleared by the caller)."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancel, but do not await: awaiting a cancelled child with CancelledError
        # suppressed would also swallow a cancellation of the caller itself.
        sleeper.cancel()
        waker.cancel()


async def wait_within(clock: Clock, work: Awaitable[_T], seconds: float) -> _T:
    """Return what `work` returns, or raise `TimeoutError` after `seconds` on `clock`.

    `asyncio.wait_for` on the injected clock: on timeout the work is cancelled (not awaited,
    for the reason `sleep_or_wake` gives).
    """
    task = asyncio.ensure_future(work)
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise TimeoutError(f"no answer within {seconds:g} s")
    return task.result()
