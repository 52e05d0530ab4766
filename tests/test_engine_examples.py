"""The engine's example programs run to completion and say what they should, so they never rot."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from callresilience.testing import FakeServiceNow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    """Import an example script as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an example as a program, as a reader would."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_quickstart_runs_as_a_program() -> None:
    """`python examples/quickstart.py` connects the call and shows both records, linked."""
    done = run("quickstart")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ring ada: call call-1 (attempt 1)"
    assert "call-1 is connected" in lines
    assert lines[-2].startswith("phone log ")
    assert lines[-1] == "interaction IMS0000001: closed_complete, linked: True"
    assert "4155550100" not in done.stdout


def test_agents_accept_reject_runs_as_a_program() -> None:
    """The scripted contact center rides out the outage: nothing lost, nothing twice."""
    done = run("agents_accept_reject", "--calls", "12", "--seed", "1")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "instance down from 20s to 100s" in out
    assert "breaker open" in out
    assert "breaker closed: probes succeeded" in out
    assert "rejected by ben: redirected" in out
    assert "rang out at cy (attempt 1): redirected, miss journaled" in out
    assert "Records per call:" in out
    summary = out.splitlines()[-1]
    assert summary.startswith("calls: 12, answered: ")
    assert summary.endswith("duplicates: 0, lost: 0")
    assert "4155550100" not in out


def test_agents_accept_reject_rejects_a_bad_argument() -> None:
    """A usage error exits 2 with argparse's message, before anything runs."""
    done = run("agents_accept_reject", "--calls", "many")
    assert done.returncode == 2
    assert "invalid int value" in done.stderr


@pytest.mark.parametrize("seed", range(6))
def test_agents_accept_reject_loses_nothing_whatever_the_seed(
    seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """With any seed, every call's records exist exactly once after the outage."""
    assert load("agents_accept_reject").main(["--calls", "25", "--seed", str(seed)]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("calls: 25, answered: ")
    assert summary.endswith("duplicates: 0, lost: 0")


def test_the_check_counts_duplicates_and_missing_records() -> None:
    """The example's own check fails on a duplicated Interaction or a missing work item."""
    module = load("agents_accept_reject")
    fake = FakeServiceNow()
    log = fake.insert(module.LOG, {"call_id": "c1", "duration": "30"})
    interaction = {
        "correlation_id": "c1",
        "state": "closed_complete",
        "channel_metadata_document": log["sys_id"],
    }
    fake.insert(module.INTERACTION, interaction)
    answered, missed = {"c1"}, Counter({"c1": 1})
    _, duplicates, lost = module.check(fake, ["c1"], answered, missed)
    assert (duplicates, lost) == (0, 1)  # the missed offer's work item is missing
    fake.insert(module.WORK_ITEM, {"correlation_id": "c1:missed-1"})
    fake.insert(module.INTERACTION, interaction)
    lines, duplicates, lost = module.check(fake, ["c1"], answered, missed)
    assert (duplicates, lost) == (1, 0)
    assert "1 missed-offer work item" in lines[0]
