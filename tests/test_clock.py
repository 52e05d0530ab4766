"""The clocks: the system clock's shape and the manual clock's virtual time."""

from __future__ import annotations

import asyncio

import pytest

from callresilience import Clock, SystemClock
from callresilience.testing import ManualClock


def test_both_clocks_satisfy_the_protocol() -> None:
    """SystemClock and ManualClock can be injected wherever a Clock is expected."""
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    assert repr(SystemClock()) == "SystemClock()"


def test_system_clock_moves_forward() -> None:
    """now() is monotonic and time() is UNIX seconds."""
    clock = SystemClock()
    first = clock.now()
    assert clock.now() >= first
    assert clock.time() > 1_700_000_000


@pytest.mark.anyio
async def test_system_clock_sleep_of_zero_returns() -> None:
    """A zero or negative sleep on the system clock returns without waiting."""
    await SystemClock().sleep(-1)


def test_manual_clock_moves_only_when_told() -> None:
    """now() and time() move together, only through advance()."""
    clock = ManualClock(start=10.0, epoch=1_000.0)
    assert (clock.now(), clock.time()) == (10.0, 1_000.0)
    clock.advance(2.5)
    assert (clock.now(), clock.time()) == (12.5, 1_002.5)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


@pytest.mark.anyio
async def test_manual_clock_wakes_sleepers_in_order_when_advanced() -> None:
    """Sleepers wake once virtual time passes their wake-up point, earliest first."""
    clock = ManualClock()
    woke: list[float] = []

    async def nap(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(seconds)

    tasks = [asyncio.create_task(nap(s)) for s in (300.0, 5.0, 60.0)]
    await asyncio.sleep(0)
    assert clock.next_wakeup() == 5.0
    clock.advance(61.0)
    await asyncio.sleep(0)
    assert woke == [5.0, 60.0]
    clock.advance(1_000.0)
    await asyncio.gather(*tasks)
    assert woke == [5.0, 60.0, 300.0]
    assert clock.next_wakeup() is None


@pytest.mark.anyio
async def test_manual_clock_autojump_moves_time_at_once() -> None:
    """With autojump, a sleep moves virtual time forward and returns straight away."""
    clock = ManualClock(autojump=True)
    await clock.sleep(3600)
    await clock.sleep(0)
    assert clock.now() == 3600
