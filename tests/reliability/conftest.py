"""The seed of a run, and the message that tells how to run a failing one again.

Every run takes its seed from ``CALLRESILIENCE_SEED`` when set, else from the test's own
default, so a failure printed by CI is reproduced by pasting its first line.
"""

from __future__ import annotations

import os
import shlex

import pytest

from ._checker import Report

SEED_VARIABLE = "CALLRESILIENCE_SEED"


def seed_for(default: int) -> int:
    """The seed to run: ``CALLRESILIENCE_SEED`` when set, else `default`."""
    value = os.environ.get(SEED_VARIABLE, "").strip()
    return int(value) if value else default


def reproduce_command(seed: int, nodeid: str) -> str:
    """The shell line that runs this test again with this seed."""
    return (
        f"{SEED_VARIABLE}={seed} .venv/bin/python -m pytest -p no:cacheprovider --no-cov "
        f"{shlex.quote(nodeid)}"
    )


@pytest.fixture
def reproduce(request: pytest.FixtureRequest) -> object:
    """A function of the seed that returns how to run this very test again with it."""
    return lambda seed: reproduce_command(seed, request.node.nodeid)


def verdict(report: Report, how: str) -> str:
    """The assertion message for a failed run: how to reproduce it, then what broke."""
    return f"reproduce with: {how}\n{report.text()}"
