"""The combined run: thousands of calls through a seeded schedule of mixed faults.

``CALLRESILIENCE_COMBINED_CALLS`` sets the size of the in-memory run (default 10,000); the
SQLite run takes a tenth of it, and the batched run (the drainer sending up to eight entries a
request through the Batch API, on SQLite, meeting every fault of the catalogue) a fifth. All
are checked in full by `_checker.check_history`.

The last tests pin bugs the suite found, each fixed since.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from callresilience.health import ComponentStatus, Mode, ModeConfig, ModeController
from callresilience.testing import Latency, RateLimit

from ._checker import check_history
from ._harness import (
    COMBINED_FAULTS,
    CallScript,
    FaultSpec,
    Scenario,
    Settings,
    combined_scenario,
    random_calls,
    run_scenario,
)
from .conftest import seed_for, verdict

pytestmark = pytest.mark.anyio

COMBINED_SEED = 7
CALLS = int(os.environ.get("CALLRESILIENCE_COMBINED_CALLS", "10000"))
BATCHED_PER_REQUEST = 8


async def test_combined_run_in_memory(reproduce: Callable[[int], str]) -> None:
    """Every guarantee holds over the whole run with a memory journal."""
    seed = seed_for(COMBINED_SEED)
    how = reproduce(seed)
    history = await run_scenario(combined_scenario(seed, CALLS, reproduce=how))
    report = check_history(history)
    assert report.stats["calls"] == CALLS
    assert not report.rules(), verdict(report, how)
    assert report.stats["switches"] > 0, f"reproduce with: {how}\nno outage was noticed"


async def test_combined_run_on_sqlite(reproduce: Callable[[int], str], tmp_path: Path) -> None:
    """Every guarantee holds with the SQLite journal, on a tenth of the calls."""
    seed = seed_for(COMBINED_SEED + 1)
    how = reproduce(seed)
    calls = max(100, CALLS // 10)
    scenario = combined_scenario(seed, calls, journal="sqlite", reproduce=how)
    history = await run_scenario(scenario, tmp_path)
    report = check_history(history)
    assert report.stats["calls"] == calls
    assert not report.rules(), verdict(report, how)


async def test_combined_run_batched_on_sqlite(
    reproduce: Callable[[int], str], tmp_path: Path
) -> None:
    """Every guarantee holds with the Batch API (``per_request=8``) on SQLite, a fifth of the calls.

    The faults come in rounds of the whole catalogue (`combined_scenario`'s ``each_fault``), so
    that 2,000 calls meet each of them, and the drainer works from two slots with a 0.25 s
    round trip, so that entries queue up and batches fill (`_harness.batching`).
    """
    seed = seed_for(COMBINED_SEED + 2)
    how = reproduce(seed)
    calls = max(100, CALLS // 5)
    scenario = combined_scenario(
        seed,
        calls,
        journal="sqlite",
        reproduce=how,
        per_request=BATCHED_PER_REQUEST,
        each_fault=True,
    )
    if calls >= 2000:
        assert {f.name for f in scenario.faults} >= set(COMBINED_FAULTS), how
    history = await run_scenario(scenario, tmp_path)
    report = check_history(history)
    assert report.stats["calls"] == calls
    assert not report.rules(), verdict(report, how)
    assert report.stats["batches"] > 0, f"reproduce with: {how}\nno batch was sent"
    assert report.stats["switches"] > 0, f"reproduce with: {how}\nno outage was noticed"


# -- bugs found ---------------------------------------------------------------------------------


async def test_a_timed_out_update_landing_late_does_not_undo_a_newer_one(
    reproduce: Callable[[int], str],
) -> None:
    """A hold PATCH that times out and commits 20 s later must not reopen a closed Interaction."""
    seed = seed_for(1)
    how = reproduce(seed)
    # Connected at 3 s, on hold at 5 s (its PATCH is 20 s slow), resumed at 7 s, ended at 11 s.
    call = CallScript("x1", 1.0, ring=2.0, talk=8.0, hold_at=2.0, hold_for=2.0)
    slow = FaultSpec(
        "slow_hold",
        4.99,
        0.02,
        Latency(20.0),
        methods=frozenset({"PATCH"}),
        tables=frozenset({"interaction"}),
    )
    history = await run_scenario(Scenario(seed, (call,), (slow,), reproduce=how))
    report = check_history(history)
    (interaction,) = history.tables["interaction"]
    assert interaction["state"] == "closed_complete", verdict(report, how)
    assert report.ok, verdict(report, how)


def test_a_scope_returns_to_normal_at_its_own_deadline() -> None:
    """At the time next_deadline() names, advance() switches the scope back to normal."""
    modes = ModeController(ModeConfig(enter_after=10.0, leave_after=30.0))
    modes.register("servicenow", None, 0.0)
    modes.add_scope("default")
    modes.report("servicenow", ComponentStatus.OUTAGE, 1.0, urgent=True)
    assert modes.mode("default") is Mode.RESILIENCY
    healthy_since = 243.910876887132  # (since + 30) - since < 30 in binary floating point
    modes.report("servicenow", ComponentStatus.OPERATIONAL, healthy_since)
    due = modes.next_deadline()
    assert due is not None
    changes = modes.advance(due)
    assert [c.new for c in changes] == [Mode.NORMAL]


async def test_the_drainer_speeds_up_again_once_a_per_second_limit_is_lifted(
    reproduce: Callable[[int], str],
) -> None:
    """Once a 1-a-second limit is over, entries are written within 30 s of being journaled."""
    seed = seed_for(3)
    how = reproduce(seed)
    storm = FaultSpec("storm", 0.0, 30.0, RateLimit(1, per="second"))
    scenario = Scenario(
        seed,
        tuple(random_calls(random.Random(seed), count=200, start=5.0, gap=0.5)),
        (storm,),
        settings=Settings(agents=24),
        reproduce=how,
    )
    history = await run_scenario(scenario)
    appended: dict[str, float] = {}
    slowest = 0.0
    for transition in history.journal:
        if transition.op == "append":
            appended[transition.key] = transition.at
        elif transition.op == "complete" and appended.get(transition.key, 0.0) >= 120.0:
            slowest = max(slowest, transition.at - appended[transition.key])
    assert slowest <= 30.0, f"reproduce with: {how}\nan entry waited {slowest:.0f} s"
