"""`callresilience simulate` end to end: a short real run over loopback HTTP at high speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callresilience.cli import main
from callresilience.sim._summary import SUMMARY_KEYS

SHORT = [
    "simulate",
    "--speed",
    "40",
    "--duration",
    "20s",
    "--rate",
    "1",
    "--agents",
    "6",
    "--talk",
    "2s-6s",
    "--wrap-up",
    "1s",
    "--leave-after",
    "2s",
    "--seed",
    "3",
]


def test_short_run_writes_exact_json_and_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outage run exits 0 with the exact JSON keys, nothing lost, and an SVG report."""
    summary, report, journal = tmp_path / "s.json", tmp_path / "s.html", tmp_path / "j.db"
    status = main(
        [
            *SHORT,
            "--outage",
            "6s@4s",
            "--json",
            str(summary),
            "--report",
            str(report),
            "--journal",
            str(journal),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    data = json.loads(summary.read_text())
    assert list(data) == list(SUMMARY_KEYS)
    assert set(data["offer_latency_ms"]) == {"healthy", "outage"}
    for part in data["offer_latency_ms"].values():
        assert set(part) == {"p50", "p99", "max"}
    assert (data["lost"], data["duplicates"], data["dead_letters"]) == (0, 0, 0)
    assert data["calls"] > 5
    assert data["interactions_created"] == data["interactions_expected"]
    assert data["phone_logs_created"] == data["answered"]
    assert data["work_items_created"] == data["timed_out_offers"]
    assert data["drain_seconds"] is not None
    page = report.read_text()
    assert "<svg" in page
    assert "Nothing lost, nothing duplicated." in page
    assert journal.exists()
    # Not a terminal: plain lines, no escape codes, the scenario and the summary table.
    assert "\x1b" not in out
    assert "outage (connections refused) 4s-10s" in out
    assert "fault starts: outage" in out
    assert "breaker open" in out
    assert "-> resiliency" in out
    assert "Summary: OK: nothing lost, nothing duplicated" in out
    assert "interactions_expected" in out


def test_mixed_faults_still_write_everything_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Latency, a rate limit, ambiguous commits and hibernation: nothing lost or doubled."""
    summary = tmp_path / "s.json"
    status = main(
        [
            *SHORT,
            "--latency",
            "50ms",
            "--rate-limit",
            "20/s",
            "--ambiguous",
            "0.3:10s@2s",
            "--hibernate",
            "4s@12s",
            "--json",
            str(summary),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    data = json.loads(summary.read_text())
    assert (data["lost"], data["duplicates"]) == (0, 0)


def test_healthy_run_has_no_outage_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --no-faults every call arrives while healthy."""
    summary = tmp_path / "s.json"
    assert main([*SHORT, "--duration", "8s", "--no-faults", "--json", str(summary)]) == 0
    data = json.loads(summary.read_text())
    assert data["offer_latency_ms"]["outage"] == {"p50": None, "p99": None, "max": None}
    assert "faults: no faults" in capsys.readouterr().out


def test_existing_journal_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal file from an earlier run is not reused: exit 2, and why."""
    journal = tmp_path / "j.db"
    journal.write_bytes(b"")
    assert main(["simulate", "--journal", str(journal)]) == 2
    assert "exists; give a new file" in capsys.readouterr().err
