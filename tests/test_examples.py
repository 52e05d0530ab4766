"""The programs in examples/ run to completion, so they never rot."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    """Import an example script as a module."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_route_calls_runs_as_a_program() -> None:
    """`python examples/route_calls.py` answers every call and exits 0."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "route_calls.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "lost: 0" in done.stdout
    assert "4155550100" not in done.stdout


@pytest.mark.parametrize("seed", range(8))
def test_route_calls_loses_no_call_whatever_the_agents_do(
    seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """With any seed, rejects and misses are redirected and every call ends."""
    assert load("route_calls").main(["--calls", "40", "--seed", str(seed)]) == 0
    assert "lost: 0" in capsys.readouterr().out
