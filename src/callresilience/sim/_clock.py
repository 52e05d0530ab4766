"""A clock that runs faster than real time, for simulations over real HTTP."""

from __future__ import annotations

import asyncio
import time

__all__ = ["ScaledClock"]


class ScaledClock:
    """A `Clock` on which `speed` virtual seconds pass per real second.

    `now()` starts at 0 when the clock is made, and `time()` at `epoch` (the real UNIX time
    by default), so timers, fault windows and record timestamps all follow the virtual time
    while sockets and the event loop stay real.

    Args:
        speed: Virtual seconds per real second (> 0).
        epoch: The UNIX time that `now() == 0` stands for (default: the real time now).
    """

    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed: give a number > 0, not {speed!r}")
        self._speed = float(speed)
        self._start = time.monotonic()
        self._epoch = time.time() if epoch is None else epoch

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self._speed:g})"

    @property
    def speed(self) -> float:
        """Virtual seconds per real second."""
        return self._speed

    def now(self) -> float:
        """Virtual seconds since the clock was made."""
        return (time.monotonic() - self._start) * self._speed

    def time(self) -> float:
        """The virtual UNIX time."""
        return self._epoch + self.now()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of virtual time."""
        await asyncio.sleep(max(0.0, seconds) / self._speed)
