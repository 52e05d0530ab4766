"""Builders shared by the router tests."""

from __future__ import annotations

import pytest

from callresilience import Agent, Call
from callresilience.routing import QueueConfig, Router, RouterConfig

QUEUES = ["sales", "vip", "slow", "strict", "empty", "grace"]

CONFIG = RouterConfig(
    offer_timeout=20,
    wrap_up_time=3,
    reject_delay=5,
    no_answer_delay=10,
    unreachable_delay=4,
    max_no_answer=2,
    queues=(
        QueueConfig("vip", max_offers=2),
        QueueConfig("slow", max_wait=30),
        QueueConfig("strict", reassignable=False),
        QueueConfig("empty", max_wait_no_agent=0),
        QueueConfig("grace", max_wait_no_agent=10),
    ),
)

ALICE = Agent("alice", queues=QUEUES, skills={"fr"})
BOB = Agent("bob", queues=QUEUES, node="remote")


def call(call_id: str = "c1", queue: str = "sales", at: float = 0.0, **kwargs: object) -> Call:
    """A call from a fixed caller."""
    return Call(call_id, "+14155550100", queue, at, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def router() -> Router:
    """A router with the test configuration and no agents."""
    return Router(CONFIG)


@pytest.fixture
def staffed() -> Router:
    """A router with alice ready and bob logged in but not ready."""
    r = Router(CONFIG)
    r.login(ALICE, 0.0, ready=True)
    r.login(BOB, 0.0)
    return r
