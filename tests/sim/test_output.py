"""The report page, the plain lines and the dashboard, from made-up samples."""

from __future__ import annotations

import io
import re

from rich.console import Console

from callresilience.sim import (
    Note,
    PlainDisplay,
    QuietDisplay,
    RichDisplay,
    Sample,
    format_sample,
    render_report,
    summary_text,
    timeline_svg,
)
from callresilience.sim._display import print_summary_rich

SUMMARY = {
    "calls": 3,
    "lost": 1,
    "duplicates": 0,
    "offer_latency_ms": {
        "healthy": {"p50": 1.0, "p99": 2.0, "max": 2.0},
        "outage": {"p50": None, "p99": None, "max": None},
    },
    "drain_seconds": None,
}


def sample(t: float, **changes: object) -> Sample:
    """A sample at `t` with quiet defaults."""
    values: dict[str, object] = {
        "t": t,
        "phase": "calls arriving",
        "arrived": int(t),
        "waiting": 0,
        "ringing": 1,
        "connected": 2,
        "offers": int(t),
        "redirects": 0,
        "rejected": 0,
        "timed_out": 0,
        "answered": int(t),
        "abandoned": 0,
        "overflowed": 0,
        "agents": {"idle": 3, "on_call": 2},
        "faults": (),
        "breaker": "closed",
        "modes": {"region:emea": "normal"},
        "depth": 0,
        "dead": 0,
        "phone_logs": int(t),
        "interactions": int(t),
        "work_items": 0,
    }
    values.update(changes)
    return Sample(**values)  # type: ignore[arg-type]


SAMPLES = [
    sample(0),
    sample(10),
    sample(20, faults=("outage",), breaker="open", modes={"region:emea": "resiliency"}, depth=5),
    sample(30, faults=("outage",), breaker="half_open", depth=9),
    sample(40, depth=0),
]
NOTES = [Note(20, "fault starts: outage"), Note(21, "breaker open: <failure> & more")]


def test_report_is_self_contained_with_an_svg_timeline() -> None:
    """The page holds an inline SVG and the summary, fetches nothing and escapes text."""
    page = render_report(
        title="t",
        lines=["a <run>"],
        summary=SUMMARY,
        samples=SAMPLES,
        notes=NOTES,
        problems=["c1: phone log missing"],
        footer="f",
    )
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "<polyline" in page
    assert "a &lt;run&gt;" in page
    assert "&lt;failure&gt; &amp; more" in page
    assert "c1: phone log missing" in page
    assert "did not drain" in page
    urls = set(re.findall(r"https?://[^\"' <]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # a namespace, never fetched
    assert "<script" not in page
    assert "<link" not in page


def test_report_without_problems_says_so() -> None:
    """A clean run's page says nothing was lost."""
    page = render_report(
        title="t", lines=[], summary=SUMMARY, samples=SAMPLES, notes=[], problems=[], footer=""
    )
    assert "Nothing lost, nothing duplicated." in page


def test_timeline_of_nothing_is_an_empty_svg() -> None:
    """No samples still make valid (empty) SVG."""
    assert timeline_svg([]).startswith("<svg")


def test_timeline_shades_outage_breaker_and_mode() -> None:
    """The bands show the outage, the open breaker and resiliency mode."""
    svg = timeline_svg(SAMPLES, NOTES)
    assert "down 20s-40s" in svg
    assert "open 20s-30s" in svg
    assert "half_open 30s-40s" in svg
    assert "resiliency 20s-30s" in svg


def test_plain_display_prints_notes_and_a_status_line_every_so_often() -> None:
    """Notes at once; status lines at most every `every` seconds; the last one at the end."""
    out = io.StringIO()
    display = PlainDisplay(out, every=15)
    display.begin(["hello"])
    for s in SAMPLES:
        display.update(s)
    display.note(NOTES[0])
    display.end()
    lines = out.getvalue().splitlines()
    assert lines[0] == "hello"
    assert [line[:9] for line in lines[1:]] == [
        "[   0.0s]",
        "[  20.0s]",
        "[  40.0s]",
        "[  20.0s]",
        "[  40.0s]",
    ]
    assert "instance DOWN: outage, breaker open" in lines[2]
    assert "region:emea resiliency" in lines[2]
    assert "fault starts: outage" in lines[4]
    assert "\x1b" not in out.getvalue()


def test_quiet_display_shows_nothing() -> None:
    """The quiet display accepts everything and prints nothing."""
    display = QuietDisplay()
    display.begin(["x"])
    display.update(SAMPLES[0])
    display.note(NOTES[0])
    display.end()


def test_summary_text_aligns_labels() -> None:
    """One row per key; latency split in two; an undrained journal said in words."""
    text = summary_text(SUMMARY)
    assert "offer latency ms, healthy  p50 1  p99 2  max 2" in text
    assert "offer latency ms, outage   no calls" in text
    assert "did not drain" in text


def test_rich_dashboard_draws_every_panel() -> None:
    """The dashboard shows calls, agents, offers, ServiceNow, journal and recent moments."""
    console = Console(file=io.StringIO(), width=140, force_terminal=False)
    display = RichDisplay(console=console, speed=4)
    display.begin(["seed 1"])
    display.note(NOTES[0])
    display.update(SAMPLES[2])
    display.end()
    display.end()  # twice is harmless
    print_summary_rich(console, SUMMARY, "Summary")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for words in ("Calls", "Agents", "Offers", "ServiceNow", "Journal", "Recent", "resiliency"):
        assert words in text
    assert "DOWN: outage" in text
    assert "offer latency ms, outage" in text
    assert format_sample(SAMPLES[2]) != format_sample(SAMPLES[0])
