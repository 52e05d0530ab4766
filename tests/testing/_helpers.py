"""Helpers shared by the FakeServiceNow tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

BASE_URL = "https://fake.service-now.com"


async def until(condition: Callable[[], bool], *, turns: int = 1000) -> None:
    """Let the event loop run until `condition` holds (no wall-clock sleeping)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def eventually(condition: Callable[[], bool], *, seconds: float = 5.0) -> None:
    """Wait (bounded, on the wall clock) for a server or subprocess to reach a state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.005)
