"""Bad options through the command line: exit 2, a message saying what to give, nothing written.

Only cases the CLI suites do not already hold (tests/cli, tests/sim, tests/testing).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from pathlib import Path

import pytest

from callresilience.cli import _check, main

from ..cli.test_check_cli import SECRETS, Recording, env, fake
from ..cli.test_journal_cli import _fill, journal, states


def listing(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--rate", "0"], "give a number >= 0.001"),
        (["--accept", "1.5"], "between 0 and 1"),
        (["--offer-timeout=-5s"], "--offer-timeout"),
        (["--seed", "abc"], "invalid int value"),
        (["--max-wait", "soon"], "not a duration; give seconds like 20s"),
        (["--agents", "-3"], "give a whole number >= 1"),
        (["--patience", "0s"], "give a number > 0"),
        (["--ring", "5s-1s"], "LOW <= HIGH"),
        (["--wrap-up", "fast"], "is not a distribution; give 20s"),
    ],
)
def test_simulate_refuses_bad_options_and_writes_nothing(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with the option named and what to give; no journal, summary or report file."""
    outputs = [
        "--journal",
        str(tmp_path / "j.db"),
        "--json",
        str(tmp_path / "s.json"),
        "--report",
        str(tmp_path / "r.html"),
        "--plain",
    ]
    try:
        code = main(["simulate", *argv, *outputs])
    except SystemExit as stopped:
        code = stopped.code  # type: ignore[assignment]
    assert code == 2
    captured = capsys.readouterr()
    assert words in captured.err
    assert captured.out == ""
    assert listing(tmp_path) == {}


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    """A journal with a pending, a dead, a done and an old done entry."""
    file = tmp_path / "journal.db"
    asyncio.run(_fill(file))
    return file


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["list", "--state", "stuck"], "invalid choice: 'stuck'"),
        (["purge", "--older-than", "7y"], "give a number and a unit"),
        (["purge", "--older-than=-7d"], "give a number and a unit"),
        (["dead", "--limit", "-1"], "not a limit"),
        (["replay", "2; DROP TABLE entries"], "not an entry id"),
    ],
)
def test_journal_refuses_bad_options_and_changes_nothing(
    argv: list[str], words: str, journal_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, the option named; the file's bytes and entries are as they were."""
    folder = journal_file.parent
    before = (listing(folder), states(journal_file))
    with pytest.raises(SystemExit) as stopped:
        journal(*argv, "--journal", str(journal_file))
    assert stopped.value.code == 2
    assert words in capsys.readouterr().err
    assert (listing(folder), states(journal_file)) == before


def test_journal_replay_of_ids_and_all_dead_together(
    journal_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entry ids together with --all-dead: exit 2, asks for one or the other, nothing replayed."""
    before = states(journal_file)
    assert journal("replay", "3", "--all-dead", "--journal", str(journal_file)) == 2
    assert "--all-dead" in capsys.readouterr().err
    assert states(journal_file) == before


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"INSTANCE": "https://acme.service-now.com/?sysparm_query=active=true"}, "without a path"),
        ({"PROBE_TABLE": "sys_user^ORactive=true"}, "CALLRESILIENCE_PROBE_TABLE"),
        ({"INTERACTION_TABLE": "interaction/../sys_user"}, "CALLRESILIENCE_INTERACTION_TABLE"),
        (
            {"AUTH": "api-key", "API_KEY": "Ak-00ff11ee22", "API_KEY_HEADER": "x\r\nX-Evil: 1"},
            "line break",
        ),
        (
            {"AUTH": "bearer", "TOKEN": "Tk-5512aa90ce\nX-Evil: 1"},
            "token: must not contain a line break",
        ),
        (
            {
                "AUTH": "oauth-client-credentials",
                "CLIENT_ID": "cti\napp",
                "CLIENT_SECRET": "Cs-91ab77e0d4",
            },
            "client_id",
        ),
        (
            {
                "AUTH": "oauth-client-credentials",
                "CLIENT_ID": "cti-app",
                "CLIENT_SECRET": "Cs-91ab77e0d4",
                "OAUTH_SCOPE": "useraccount\nadmin",
            },
            "scope",
        ),
        (
            {
                "AUTH": "oauth-client-credentials",
                "CLIENT_ID": "cti-app",
                "CLIENT_SECRET": "Cs-91ab77e0d4",
                "TOKEN_PATH": "/oauth_token.do?x=1",
            },
            "token_path",
        ),
        ({"AUTH": "OAuth client credentials"}, "is not known; use one of basic"),
    ],
)
@pytest.mark.anyio
async def test_check_refuses_bad_configuration_without_a_request(
    changes: dict[str, str | None],
    words: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 2, the variable named, no secret shown, and not one request sent."""
    caplog.set_level(logging.DEBUG)
    transport = Recording(fake().transport())
    out = io.StringIO()
    code = await _check.run_check(env(**changes), out, transport=transport)
    err = capsys.readouterr().err
    assert code == 2
    assert words in err
    assert out.getvalue() == ""
    assert transport.sent == []
    for secret in (*SECRETS, "Tk-5512aa90ce\nX-Evil: 1"):
        assert secret not in err + caplog.text


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "http"], "invalid int value"),
        (["--seed", "0x"], "invalid int value"),
    ],
)
def test_fake_servicenow_refuses_bad_options(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 from the parser, naming the option, before anything listens."""
    with pytest.raises(SystemExit) as stopped:
        main(["fake-servicenow", *argv])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert words in captured.err
    assert captured.out == ""


def test_fake_servicenow_password_without_user(capsys: pytest.CaptureFixture[str]) -> None:
    """--password alone exits 2, asks for both, and does not echo the password."""
    assert main(["fake-servicenow", "--password", "Pw-fake-only"]) == 2
    captured = capsys.readouterr()
    assert "give both --user and --password" in captured.err
    assert "Pw-fake-only" not in captured.out + captured.err
