"""The command's output and exit status around a run, with the run itself stubbed out."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from callresilience import sim
from callresilience.cli import build_parser
from callresilience.cli._simulate import _run
from callresilience.sim import CheckResult, RunResult, ScaledClock, Scenario
from callresilience.sim._summary import SUMMARY_KEYS

PROBLEMS = tuple(f"c{n}: phone log missing" for n in range(25))


def fake_result(scenario: Scenario, *, lost: int) -> RunResult:
    """What a run that lost `lost` calls returns."""
    summary: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS, 0)
    summary["lost"] = lost
    summary["offer_latency_ms"] = {
        part: {"p50": 1.0, "p99": 2.0, "max": 3.0} for part in ("healthy", "outage")
    }
    summary["drain_seconds"] = 4.0
    problems = PROBLEMS[:lost]
    return RunResult(
        scenario, summary, CheckResult(lost, 0, 0, 0, 0, problems), (), (), 1, 2, Path("j")
    )


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


@pytest.fixture
def stub_run(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the run with one that loses as many calls as the list's first item says."""
    lost = [25]

    async def run(scenario: Scenario, display: Any) -> RunResult:
        display.begin(["stub"])
        display.end()
        return fake_result(scenario, lost=lost[0])

    monkeypatch.setattr(sim, "run", run)
    return lost


def test_a_loss_makes_the_command_exit_1_and_lists_problems(
    stub_run: list[int], tmp_path: Path
) -> None:
    """Lost calls: exit 1, FAILED, the first 20 problems and a count of the rest, files written."""
    out = io.StringIO()
    args = build_parser().parse_args(
        ["simulate", "--json", str(tmp_path / "s.json"), "--report", str(tmp_path / "r.html")]
    )
    assert _run(args, stdout=out) == 1
    text = out.getvalue()
    assert "Summary: FAILED" in text
    assert text.count("problem: ") == 20
    assert "... and 5 more" in text
    assert json.loads((tmp_path / "s.json").read_text())["lost"] == 25
    assert "c24: phone log missing" in (tmp_path / "r.html").read_text()


def test_on_a_terminal_the_summary_is_a_rich_table(
    stub_run: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A terminal gets the dashboard and a table; a clean run exits 0."""
    stub_run[0] = 0
    args = build_parser().parse_args(["simulate"])
    assert _run(args, stdout=Terminal()) == 0
    assert "OK: nothing lost" in capsys.readouterr().out


def test_plain_forces_lines_on_a_terminal(stub_run: list[int]) -> None:
    """--plain prints plain lines even when the output is a terminal."""
    out = Terminal()
    assert _run(build_parser().parse_args(["simulate", "--plain"]), stdout=out) == 1
    assert "stub" in out.getvalue()
    assert "\x1b" not in out.getvalue()


def test_missing_uvicorn_is_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the fake cannot be served the command says what to install and exits 1."""

    async def run(scenario: Scenario, display: Any) -> RunResult:
        raise RuntimeError("needs uvicorn; install it with: pip install 'callresilience[sim]'")

    monkeypatch.setattr(sim, "run", run)
    assert _run(build_parser().parse_args(["simulate", "--plain"]), stdout=io.StringIO()) == 1
    assert "callresilience[sim]" in capsys.readouterr().err


def test_max_wait_none_turns_overflow_off(stub_run: list[int]) -> None:
    """`--max-wait none` parses to no limit."""
    args = build_parser().parse_args(["simulate", "--max-wait", "none", "--ring", "2s"])
    assert args.max_wait is None
    assert args.ring.kind == "fixed"


def test_scaled_clock_runs_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sleeping N virtual seconds waits N / speed real seconds; bad speeds are refused."""
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr("callresilience.sim._clock.asyncio.sleep", fake_sleep)
    clock = ScaledClock(10, epoch=1000.0)
    asyncio.run(clock.sleep(5))
    asyncio.run(clock.sleep(-1))
    assert waited == [0.5, 0.0]
    assert clock.speed == 10
    assert clock.time() >= 1000.0
    assert clock.now() >= 0
    assert repr(clock) == "ScaledClock(speed=10)"
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(0)
