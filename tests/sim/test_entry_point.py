"""The installed `callresilience` command and `python -m callresilience` run the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

KEYS = {
    "calls",
    "offered",
    "answered",
    "rejected_offers",
    "timed_out_offers",
    "abandoned",
    "overflowed",
    "lost",
    "interactions_expected",
    "interactions_created",
    "phone_logs_created",
    "work_items_created",
    "duplicates",
    "dead_letters",
    "offer_latency_ms",
    "drain_seconds",
}
SHORT = ["--speed", "50", "--duration", "20s", "--agents", "4", "--outage", "5s@5s", "--seed", "2"]


def command(kind: str) -> list[str]:
    """The console script installed next to this interpreter, or `python -m callresilience`."""
    if kind == "script":
        script = Path(sys.executable).with_name("callresilience")
        if not script.exists():
            pytest.skip("the console script is not installed next to this interpreter")
        return [str(script)]
    return [sys.executable, "-m", "callresilience"]


@pytest.mark.parametrize("kind", ["script", "module"])
def test_simulate_through_the_entry_point_writes_its_json_and_exits_0(
    kind: str, tmp_path: Path
) -> None:
    """A short run through the real command: exit 0, plain lines, the JSON with its keys."""
    out = tmp_path / "run.json"
    done = subprocess.run(
        [
            *command(kind),
            "simulate",
            *SHORT,
            "--json",
            str(out),
            "--report",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing lost, nothing duplicated" in done.stdout
    figures = json.loads(out.read_text())
    assert set(figures) == KEYS
    assert figures["lost"] == figures["duplicates"] == 0
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_bad_options_through_the_entry_point_exit_2() -> None:
    """A malformed outage window is refused by the real command with exit status 2."""
    done = subprocess.run(
        [*command("module"), "simulate", "--outage", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--outage" in done.stderr
