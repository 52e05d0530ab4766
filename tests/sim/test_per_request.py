"""`--per-request`: the simulator's drainer sending journal entries through the Batch API."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from callresilience import sim
from callresilience.cli import build_parser, main
from callresilience.cli._simulate import _run
from callresilience.sim import (
    BatchUse,
    CheckResult,
    QuietDisplay,
    RunResult,
    Scenario,
    ScenarioError,
    _runner,
    batch_use,
    scenario_lines,
)
from callresilience.sim._summary import SUMMARY_KEYS
from callresilience.testing import FakeServiceNow, RecordedRequest

from .test_run import SHORT

BATCH_LINE = re.compile(r"^Batch API: (\d+) requests? carried (\d+) writes?", re.MULTILINE)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[FakeServiceNow]:
    """The fakes the simulator's runs build, kept for the test to read their logs."""
    built: list[FakeServiceNow] = []

    def keep(*args: Any, **kwargs: Any) -> FakeServiceNow:
        fake = FakeServiceNow(*args, **kwargs)
        built.append(fake)
        return fake

    monkeypatch.setattr(_runner, "FakeServiceNow", keep)
    return built


def test_batched_outage_run_writes_everything_once_and_counts_the_batches(
    tmp_path: Path, fakes: list[FakeServiceNow], capsys: pytest.CaptureFixture[str]
) -> None:
    """--per-request 8 through an outage: exit 0, nothing lost or doubled, batches counted."""
    summary, report = tmp_path / "s.json", tmp_path / "s.html"
    argv = [*SHORT, "--outage", "6s@4s", "--per-request", "8"]
    status = main([*argv, "--json", str(summary), "--report", str(report)])
    out = capsys.readouterr().out
    assert status == 0, out
    data = json.loads(summary.read_text())
    assert list(data) == list(SUMMARY_KEYS)
    assert (data["lost"], data["duplicates"], data["dead_letters"]) == (0, 0, 0)
    assert data["interactions_created"] == data["interactions_expected"]
    assert data["phone_logs_created"] == data["answered"]
    assert "up to 8 journal entries per request through the Batch API" in out

    match = BATCH_LINE.search(out)
    assert match is not None, out
    requests, writes = int(match[1]), int(match[2])
    assert requests > 0
    assert writes >= requests

    # The line agrees with the instance's own log, counted here by hand.
    (fake,) = fakes
    log = fake.requests
    outer = [r for r in log if r.path == "/api/now/v1/batch"]
    assert outer
    assert all(r.method == "POST" and r.table is None and r.batch_id is None for r in outer)
    received = [r for r in outer if r.outcome not in {"refused", "black_holed"}]
    subs = [r for r in log if r.batch_id is not None]
    assert all(r.table is not None and r.method in {"POST", "PATCH"} for r in subs)
    assert (requests, writes) == (len(received), len(subs))
    assert match[0] in report.read_text()


def test_one_entry_per_request_sends_no_batch(
    fakes: list[FakeServiceNow], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --per-request the drainer never calls the Batch API and no line is printed."""
    assert main([*SHORT, "--duration", "8s", "--outage", "3s@2s"]) == 0
    out = capsys.readouterr().out
    assert "Batch API" not in out
    (fake,) = fakes
    assert any(r.table is not None and r.method == "POST" for r in fake.requests)
    assert not any("batch" in r.path for r in fake.requests)


def request(path: str, **changes: Any) -> RecordedRequest:
    """A logged request: an answered POST to `path` unless told otherwise."""
    fields: dict[str, Any] = {
        "method": "POST",
        "path": path,
        "query": "",
        "table": None,
        "sys_id": None,
        "status": 200,
        "outcome": "answered",
        "committed": True,
        "at": 1.0,
    }
    fields.update(changes)
    return RecordedRequest(**fields)


def test_batch_use_counts_sub_requests_as_writes_and_the_batch_once() -> None:
    """Sub-requests are the writes; the outer POST counts as one request, never as a write."""
    table = "/api/now/table/x_phone_log"
    log = [
        request(table, table="x_phone_log"),  # sent alone: not batched
        request(table, table="x_phone_log", status=201, batch_id="b1"),
        request(f"{table}/abc", method="PATCH", table="x_phone_log", batch_id="b1"),
        request(table, table="x_phone_log", status=429, committed=False, batch_id="b1"),
        request("/api/now/v1/batch"),
        request(table, table="x_phone_log", status=None, outcome="dropped", batch_id="b2"),
        request("/api/now/batch/", status=None, outcome="dropped"),
        request("/api/now/v1/batch", status=None, outcome="refused", committed=False),
        request("/api/now/table/x_phone_log", method="GET", table="x_phone_log"),
    ]
    use = batch_use(log)
    assert use == BatchUse(requests=2, writes=4, not_received=1)
    assert use.describe() == (
        "Batch API: 2 requests carried 4 writes; 1 more did not reach the instance"
    )
    assert batch_use([]) == BatchUse(0, 0, 0)
    assert BatchUse(1, 1).describe() == "Batch API: 1 request carried 1 write"


def test_a_scenario_sends_one_entry_per_request_by_default(tmp_path: Path) -> None:
    """The default is 1, and only a batching scenario says so when it starts."""
    scenario = Scenario()
    assert scenario.per_request == 1
    run = _runner._Run(scenario, QuietDisplay(), tmp_path / "j.db")
    assert run.config("http://127.0.0.1:1").drainer.per_request == 1
    assert not any("Batch API" in line for line in scenario_lines(scenario))
    batching = "\n".join(scenario_lines(Scenario(per_request=8)))
    assert "up to 8 journal entries per request through the Batch API" in batching


@pytest.mark.parametrize("value", [0, 101, -1, True, 2.5, "8"])
def test_scenario_refuses_a_bad_per_request(value: Any) -> None:
    """per_request is a whole number from 1 to 100."""
    with pytest.raises(ScenarioError, match="per_request: give a whole number from 1 to 100"):
        Scenario(per_request=value)


@pytest.mark.parametrize(("per_request", "batch"), [(1, 64), (8, 64), (100, 100)])
def test_the_drainer_gets_per_request_and_a_claim_that_holds_a_batch(
    per_request: int, batch: int, tmp_path: Path
) -> None:
    """per_request reaches the DrainerConfig, whose claim holds a batch; demo settings stay."""
    run = _runner._Run(Scenario(per_request=per_request), QuietDisplay(), tmp_path / "j.db")
    drainer = run.config("http://127.0.0.1:1").drainer
    assert drainer.per_request == per_request
    assert drainer.batch == batch
    assert drainer.backoff.cap == 10.0
    assert (drainer.breaker.minimum_calls, drainer.breaker.window) == (3, 10)
    assert drainer.breaker.open_wait == 5.0


@pytest.mark.parametrize("text", ["0", "101", "x", "2.5", "-1", ""])
def test_bad_per_request_exits_2_saying_what_to_give(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A per-request that is not a whole number from 1 to 100 stops the command with 2."""
    with pytest.raises(SystemExit) as stopped:
        main(["simulate", "--per-request", text])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--per-request" in err
    assert "give a whole number from 1 to 100" in err


def test_per_request_parses_and_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """1 and 100 are accepted, 1 is the default, and --help documents the option."""
    parser = build_parser()
    assert parser.parse_args(["simulate"]).per_request == 1
    assert parser.parse_args(["simulate", "--per-request", "100"]).per_request == 100
    assert parser.parse_args(["simulate", "--per-request", " 1 "]).per_request == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--per-request N" in text
    assert "Batch API" in text


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


@pytest.fixture
def stub_run(monkeypatch: pytest.MonkeyPatch) -> list[Scenario]:
    """Replace the run with a clean one that used the Batch API; keep the scenarios run."""
    scenarios: list[Scenario] = []

    async def run(scenario: Scenario, display: Any) -> RunResult:
        scenarios.append(scenario)
        display.begin(["stub"])
        display.end()
        summary: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS, 0)
        summary["offer_latency_ms"] = {
            part: {"p50": 1.0, "p99": 2.0, "max": 3.0} for part in ("healthy", "outage")
        }
        check = CheckResult(0, 0, 0, 0, 0, ())
        use = BatchUse(12, 96, 2)
        return RunResult(scenario, summary, check, (), (), 1, 2, Path("j"), batch=use)

    monkeypatch.setattr(sim, "run", run)
    return scenarios


LINE = "Batch API: 12 requests carried 96 writes; 2 more did not reach the instance"


def test_the_batch_line_follows_the_summary_and_goes_in_the_report(
    stub_run: list[Scenario], tmp_path: Path
) -> None:
    """Plain output: the line after the summary table; the report has it; the JSON does not."""
    out = io.StringIO()
    summary, report = tmp_path / "s.json", tmp_path / "r.html"
    args = build_parser().parse_args(
        ["simulate", "--per-request", "8", "--json", str(summary), "--report", str(report)]
    )
    assert _run(args, stdout=out) == 0
    assert stub_run[0].per_request == 8
    lines = out.getvalue().splitlines()
    assert lines[lines.index(LINE) - 1].split() == ["drain_seconds", "0"]
    assert list(json.loads(summary.read_text())) == list(SUMMARY_KEYS)
    assert f"<p>{LINE}</p>" in report.read_text()


def test_the_batch_line_is_printed_under_the_dashboard(
    stub_run: list[Scenario], capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal the line follows the rich summary table."""
    args = build_parser().parse_args(["simulate", "--per-request", "8"])
    assert _run(args, stdout=Terminal()) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert LINE in text


def test_no_batch_line_with_one_entry_per_request(stub_run: list[Scenario], tmp_path: Path) -> None:
    """With the default of 1 neither the output nor the report mention the Batch API."""
    out = io.StringIO()
    report = tmp_path / "r.html"
    assert _run(build_parser().parse_args(["simulate", "--report", str(report)]), stdout=out) == 0
    assert stub_run[0].per_request == 1
    assert "Batch API" not in out.getvalue()
    assert "Batch API" not in report.read_text()
