"""What the security tests share: an engine on virtual time, and a fingerprint of its state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ..engine.conftest import Rig, build_rig, make_config


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A started engine with ada and ben logged in and ready, against the in-process fake."""
    async with build_rig(make_config()) as built:
        yield built


async def fingerprint(rig: Rig) -> tuple[Any, ...]:
    """Everything a refused call could change: routing, status, journal, channel calls."""
    entries = await rig.engine.journal.list(limit=10_000)
    status = await rig.engine.status()
    del status["time"]  # the clock moves on; nothing else may
    return (
        rig.engine.router.snapshot(),
        status,
        [(e.entry_id, e.key, e.state, e.attempts) for e in entries],
        list(rig.channel.offers),
        list(rig.channel.withdrawn),
        list(rig.channel.notices),
        list(rig.channel.transfers),
    )
