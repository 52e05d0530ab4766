"""Fixtures for the FakeServiceNow tests: a manual clock, a fake and an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from callresilience.testing import FakeServiceNow, ManualClock

from ._helpers import BASE_URL


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeServiceNow:
    """An open (no credentials) fake on the manual clock."""
    return FakeServiceNow(clock=clock)


@pytest.fixture
async def client(fake: FakeServiceNow) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to `fake` in process."""
    async with httpx.AsyncClient(transport=fake.transport(), base_url=BASE_URL) as client:
        yield client
