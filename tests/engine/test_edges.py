"""Engine edges: the default journal file, and `end` for a call nobody answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from callresilience.engine import Engine, EngineConfig, default_journal_path
from callresilience.engine._types import journal_path_for
from callresilience.journal import SqliteJournal
from callresilience.routing import CallAbandoned, CallState
from callresilience.servicenow import BasicAuth
from callresilience.testing import ManualClock

from .conftest import RecordingChannel, Rig

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("system", "environ", "folder"),
    [
        ("posix", {"XDG_STATE_HOME": "/srv/state"}, "/srv/state"),
        ("posix", {}, "/home/op/.local/state"),
        ("nt", {"LOCALAPPDATA": "/c/Users/op/Local"}, "/c/Users/op/Local"),
        ("nt", {}, "/home/op/AppData/Local"),
    ],
)
def test_the_default_journal_is_in_the_users_state_folder(
    system: str, environ: dict[str, str], folder: str
) -> None:
    """XDG_STATE_HOME (else ~/.local/state), or %LOCALAPPDATA% on Windows, holds the journal."""
    path = journal_path_for(system, environ, Path("/home/op"))
    assert path == Path(folder) / "callresilience" / "journal.db"


async def test_an_engine_with_the_default_config_opens_a_sqlite_journal_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only a URL and credentials: the engine creates the folder and a SQLite journal in it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "missing" / "state"))
    config = EngineConfig("https://example.service-now.com", auth=BasicAuth("u", "p"))
    clock = ManualClock()
    engine = Engine(config, RecordingChannel(clock), clock=clock)
    try:
        assert isinstance(engine.journal, SqliteJournal)
        assert Path(engine.journal.path) == default_journal_path()
        assert default_journal_path().exists()
    finally:
        await engine.aclose()


@pytest.mark.parametrize("answered_by", [None, "ringing"])
async def test_end_of_a_call_nobody_answered_is_a_hang_up(
    rig: Rig, answered_by: str | None
) -> None:
    """end() on a waiting or ringing call abandons it, as the platform's one disconnect event."""
    if answered_by is None:
        for agent_id in ("ada", "ben"):
            await rig.engine.not_ready(agent_id)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    await rig.engine.end("c1")
    (abandoned,) = [e for e in rig.events if isinstance(e, CallAbandoned)]
    assert abandoned.call_id == "c1"
    assert rig.engine.router.finished("c1") is CallState.ABANDONED


async def test_now_is_the_engine_clock_that_call_arrival_times_use(rig: Rig) -> None:
    """engine.now() reads the injected clock, so a call stamped with it waits from then."""
    await rig.advance(7)
    assert rig.engine.now() == rig.clock.now()
    for agent_id in ("ada", "ben"):
        await rig.engine.not_ready(agent_id)
    await rig.engine.call_arrived(rig.call("c1"))
    assert rig.engine.router.call("c1").call.arrived == rig.engine.now()
