"""The fault matrix: each fault, started at each phase of a cohort of calls, checked in full.

Each cell runs background calls and a cohort of eight calls that arrive together and go
through their phases together; the fault starts at the cohort's phase and lasts 30 s. The run
is checked by `_checker.check_history`, and its offers are compared with those of the same
seed without any fault: the call path does not wait on ServiceNow, so they must be the same.

Every cell runs twice: with the drainer sending one entry a request, and with it sending up to
eight through the Batch API (``per_request=8``, with two drainer slots and a 0.25 s round trip
so that entries queue up and batches fill: see `_harness.batching`). A batched cell must have
sent batches, and its offers must be those of the unbatched run without faults.

Set ``CALLRESILIENCE_MATRIX_REPORT=path`` to write the table of results (docs/reliability.md
shows one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callresilience import AmbiguousError, TransientError
from callresilience.health import Mode, ModeChanged
from callresilience.journal import Drainer

from ._checker import RunHistory, check_history
from ._harness import (
    COHORT_AT,
    FAULTS,
    PHASES,
    WINDOW,
    batches_sent,
    fault_spec,
    faults_met,
    matrix_scenario,
    offer_timeline,
    run_scenario,
)
from .conftest import seed_for, verdict

pytestmark = pytest.mark.anyio

MATRIX_SEED = 20260101
RESULTS: dict[tuple[int, str, str], str] = {}
PER_REQUEST = (1, 8)
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
    if batches_sent(history):
        end = start + WINDOW
        met = sum(1 for s in history.sent if s.kind == "batch" and start <= s.at < end)
        parts.append(f"{met} of {batches_sent(history)} batches")
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
    lines: list[str] = []
    for per_request in PER_REQUEST:
        if not any(key[0] == per_request for key in RESULTS):
            continue
        if per_request > 1:
            lines += ["", f"With `per_request={per_request}` (the Batch API):", ""]
        lines += [
            "| fault | " + " | ".join(PHASES) + " |",
            "|---|" + "---|" * len(PHASES),
        ]
        for fault in FAULTS:
            row = [RESULTS.get((per_request, fault, phase), "not run") for phase in PHASES]
            lines.append(f"| `{fault}` | " + " | ".join(row) + " |")
    Path(target).write_text("\n".join(lines).lstrip("\n") + "\n", encoding="utf-8")


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("per_request", PER_REQUEST, ids=lambda n: f"per_request_{n}")
async def test_fault_at_phase(
    per_request: int, fault: str, phase: str, reproduce: Callable[[int], str]
) -> None:
    """Every guarantee holds with the fault starting at the phase, and the offers are unchanged."""
    seed = seed_for(MATRIX_SEED)
    how = reproduce(seed)
    history = await run_scenario(matrix_scenario(seed, fault, phase, how, per_request=per_request))
    report = check_history(history)
    broken = report.rules()
    RESULTS[(per_request, fault, phase)] = cell(history, fault, phase, broken)
    assert not broken, verdict(report, how)
    assert faults_met(history) > 0, f"reproduce with: {how}\nthe fault never met a request"
    if per_request > 1:
        assert batches_sent(history) > 0, f"reproduce with: {how}\nno batch was sent"
    if fault_spec(fault, 0.0, 1.0).outage:
        assert report.stats["switches"] >= 1, f"reproduce with: {how}\nno switch to resiliency"
    assert offer_timeline(history) == await baseline(seed), (
        f"reproduce with: {how}\nthe offers differ from those of the same seed without faults"
    )


async def test_a_drainer_that_resends_an_ambiguous_batch_is_caught(
    monkeypatch: pytest.MonkeyPatch, reproduce: Callable[[int], str]
) -> None:
    """The batched matrix has teeth: resending a batch whose answer was lost is a duplicate.

    A drainer that took a batch's lost answer for a plain transient failure would post its
    creates again without looking them up first; the checker must then report duplicates.
    """
    send_batch = Drainer._send_batch

    async def careless(self: Drainer, ready: Any) -> dict[int, Any]:
        outcomes = await send_batch(self, ready)
        return {
            key: TransientError(str(outcome)) if isinstance(outcome, AmbiguousError) else outcome
            for key, outcome in outcomes.items()
        }

    monkeypatch.setattr(Drainer, "_send_batch", careless)
    seed = seed_for(MATRIX_SEED)
    how = reproduce(seed)
    scenario = matrix_scenario(seed, "ambiguous_commit", "accept", how, per_request=8)
    report = check_history(await run_scenario(scenario))
    assert "duplicate" in report.rules(), f"reproduce with: {how}\n{report.text()}"
