"""A manual clock: virtual time that moves only when told, or jumps to the next sleeper."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import attrs

__all__ = ["ManualClock"]


@attrs.define
class ManualClock:
    """A `Clock` whose time moves only when a test says so.

    `sleep()` parks the caller until `advance()` moves time past its wake-up point, so code
    under test that waits five minutes runs in microseconds. With `autojump=True`, a sleep
    moves time forward at once (like trio's MockClock with autojump), which suits code that
    only ever sleeps to pace itself.

    Attributes:
        start: The initial monotonic time.
        epoch: The UNIX time that corresponds to `start`.
        autojump: Jump to the wake-up time as soon as anything sleeps.
    """

    start: float = 0.0
    epoch: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    autojump: bool = False
    _now: float = attrs.field(init=False)
    _sleepers: list[tuple[float, int, asyncio.Future[None]]] = attrs.field(
        init=False, factory=list, repr=False
    )
    _seq: itertools.count[int] = attrs.field(init=False, factory=itertools.count, repr=False)

    def __attrs_post_init__(self) -> None:
        self._now = self.start

    def now(self) -> float:
        """Return the virtual monotonic time."""
        return self._now

    def time(self) -> float:
        """Return the virtual UNIX time."""
        return self.epoch + (self._now - self.start)

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time has moved `seconds` forward."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self.autojump:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose time has come."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def next_wakeup(self) -> float | None:
        """Return when the earliest sleeper wakes, or None when nobody sleeps."""
        return self._sleepers[0][0] if self._sleepers else None
