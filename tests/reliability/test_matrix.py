"""The fault matrix: each fault, started at each phase of a cohort of calls, checked in full.

Each cell runs background calls and a cohort of eight calls that arrive together and go
through their phases together; the fault starts at the cohort's phase and lasts 30 s. The run
is checked by `_checker.check_history`, and its offers are compared with those of the same
seed without any fault: the call path does not wait on ServiceNow, so they must be the same.

Set ``CALLRESILIENCE_MATRIX_REPORT=path`` to write the table of results (docs/reliability.md
shows one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callresilience.health import Mode, ModeChanged

from ._checker import RunHistory, check_history
from ._harness import (
    COHORT_AT,
    FAULTS,
    PHASES,
    fault_spec,
    faults_met,
    matrix_scenario,
    offer_timeline,
    run_scenario,
)
from .conftest import seed_for, verdict

pytestmark = pytest.mark.anyio

MATRIX_SEED = 20260101
RESULTS: dict[tuple[str, str], str] = {}
_BASELINES: dict[int, list[Any]] = {}


async def baseline(seed: int) -> list[Any]:
    """The offers of the same seed with no fault at all."""
    if seed not in _BASELINES:
        history = await run_scenario(matrix_scenario(seed, None, "arrival"))
        report = check_history(history)
        assert report.ok, verdict(report, f"the baseline of seed {seed}")
        _BASELINES[seed] = offer_timeline(history)
    return _BASELINES[seed]


def cell(history: RunHistory, fault: str, phase: str, rules: set[str]) -> str:
    """What one cell of the table says."""
    report = check_history(history)
    parts = ["ok" if not rules else "FAILS: " + ", ".join(sorted(rules))]
    parts.append(f"{faults_met(history)} req")
    start = COHORT_AT + PHASES[phase]
    switch = next(
        (
            at
            for at, e in history.events
            if isinstance(e, ModeChanged) and e.new is Mode.RESILIENCY and at >= start
        ),
        None,
    )
    if switch is not None:
        parts.append(f"switch +{switch - start:.1f} s")
    if report.stats["dead_entries"]:
        parts.append(f"{report.stats['dead_entries']} dead")
    late = sum(1 for v in report.violations if v.rule == "late_write")
    if late:
        parts.append(f"{late} late write")
    return " · ".join(parts)


@pytest.fixture(scope="module", autouse=True)
def matrix_report() -> Iterator[None]:
    """Write the results table when asked to (``CALLRESILIENCE_MATRIX_REPORT``)."""
    yield
    target = os.environ.get("CALLRESILIENCE_MATRIX_REPORT")
    if not target or not RESULTS:
        return
    lines = [
        "| fault | " + " | ".join(PHASES) + " |",
        "|---|" + "---|" * len(PHASES),
    ]
    for fault in FAULTS:
        row = [RESULTS.get((fault, phase), "not run") for phase in PHASES]
        lines.append(f"| `{fault}` | " + " | ".join(row) + " |")
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_at_phase(fault: str, phase: str, reproduce: Callable[[int], str]) -> None:
    """Every guarantee holds with the fault starting at the phase, and the offers are unchanged."""
    seed = seed_for(MATRIX_SEED)
    how = reproduce(seed)
    history = await run_scenario(matrix_scenario(seed, fault, phase, how))
    report = check_history(history)
    broken = report.rules()
    RESULTS[(fault, phase)] = cell(history, fault, phase, broken)
    assert not broken, verdict(report, how)
    assert faults_met(history) > 0, f"reproduce with: {how}\nthe fault never met a request"
    if fault_spec(fault, 0.0, 1.0).outage:
        assert report.stats["switches"] >= 1, f"reproduce with: {how}\nno switch to resiliency"
    assert offer_timeline(history) == await baseline(seed), (
        f"reproduce with: {how}\nthe offers differ from those of the same seed without faults"
    )
