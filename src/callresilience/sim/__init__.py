"""The contact-center simulator behind ``callresilience simulate``.

A run starts the FakeServiceNow over real HTTP on 127.0.0.1, an `Engine` with a SQLite
journal, scripted agents and Poisson callers, all on one clock that may run faster than real
time, and a fault schedule on the fake. When it is over, the fake's tables are checked against
the run's own call history. The parts are separate: the scenario and its parsing, the history
and the checker, the summary and the report are pure; the runner does the I/O; the displays
show it. rich (in the ``sim`` extra) is needed only for the live dashboard.
"""

from __future__ import annotations

from ._check import CheckResult, check
from ._clock import ScaledClock
from ._display import PlainDisplay, QuietDisplay, RichDisplay, format_sample, summary_text
from ._history import CallHistory, History
from ._report import render_report, timeline_svg
from ._runner import Display, RunResult, run, scenario_lines
from ._scenario import (
    Arrival,
    FaultSpec,
    Scenario,
    ScenarioError,
    arrivals,
    parse_distribution,
    parse_fault,
    parse_seconds,
    parse_window,
)
from ._summary import BatchUse, batch_use, exit_status, percentiles, summarize
from ._timeline import Note, Sample

__all__ = [
    "Arrival",
    "BatchUse",
    "CallHistory",
    "CheckResult",
    "Display",
    "FaultSpec",
    "History",
    "Note",
    "PlainDisplay",
    "QuietDisplay",
    "RichDisplay",
    "RunResult",
    "Sample",
    "ScaledClock",
    "Scenario",
    "ScenarioError",
    "arrivals",
    "batch_use",
    "check",
    "exit_status",
    "format_sample",
    "parse_distribution",
    "parse_fault",
    "parse_seconds",
    "parse_window",
    "percentiles",
    "render_report",
    "run",
    "scenario_lines",
    "summarize",
    "summary_text",
    "timeline_svg",
]
