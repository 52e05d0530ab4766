"""The `callresilience` command dispatches to every subcommand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callresilience.cli import main


def test_every_subcommand_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    """--help lists simulate, journal, check and fake-servicenow."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("simulate", "journal", "check", "fake-servicenow"):
        assert command in out


def test_journal_goes_to_its_handler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`journal status` of a missing file exits 3 and creates nothing."""
    missing = tmp_path / "none.db"
    assert main(["journal", "status", "--journal", str(missing)]) == 3
    assert not missing.exists()
    assert "no such file" in capsys.readouterr().err


def test_check_goes_to_its_handler(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` without an instance configured exits 2 and says which variable to set."""
    for name in list(os.environ):
        if name.startswith("CALLRESILIENCE_"):
            monkeypatch.delenv(name)
    assert main(["check"]) == 2
    captured = capsys.readouterr()
    assert "CALLRESILIENCE_" in captured.out + captured.err
