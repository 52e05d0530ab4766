"""`callresilience journal`: status, list, dead, replay and purge on a real SQLite journal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from callresilience.cli import _journal
from callresilience.journal import EntryState, Intent, SqliteJournal, create_intent

from ._helpers import run

T0 = 1_700_000_000.0
NOW = T0 + 3600.0
ADA_NUMBER = "+14155550100"
BEN_NUMBER = "+447700900123"


def journal(*argv: str, clock: float = NOW) -> int:
    """Run `callresilience journal ...` with the clock at `clock`."""
    return run(_journal.register, ["journal", *argv], clock=lambda: clock)


async def _fill(path: Path) -> None:
    """c1: phone log done, Interaction pending; c2: dead; c3: done long ago; c4: pending."""
    async with SqliteJournal(path) as store:
        fields = {"call_id": "c1", "phone_number": ADA_NUMBER}
        await store.append(
            [
                create_intent(
                    "c1",
                    "phone_log",
                    "sn_openframe_phone_log",
                    fields,
                    correlation=("call_id", "c1"),
                ),
                create_intent(
                    "c1",
                    "interaction",
                    "interaction",
                    {"caller_phone_number": ADA_NUMBER},
                    correlation=("correlation_id", "c1"),
                ),
            ],
            T0,
        )
        await store.append(
            [
                create_intent(
                    "c2",
                    "phone_log",
                    "sn_openframe_phone_log",
                    {"phone_number": BEN_NUMBER},
                    correlation=("call_id", "c2"),
                )
            ],
            T0 + 10,
        )
        await store.append([Intent("c3", "create", {"n": 1}, "c3:x")], T0 - 30 * 86400)
        await store.append([Intent("c4", "create", {"n": 2}, "c4:x")], T0 + 20)
        claimed = {e.call_id: e for e in await store.claim("w", T0 + 30, 10, 60.0)}
        await store.complete(claimed["c1"].entry_id, "w", T0 + 31)
        await store.kill(
            claimed["c2"].entry_id,
            "w",
            T0 + 32,
            f"PermanentError: 403 Forbidden (caller {BEN_NUMBER})",
        )
        await store.complete(claimed["c3"].entry_id, "w", T0 - 29 * 86400)
        await store.retry(claimed["c4"].entry_id, "w", T0 + 33, T0 + 40, "503")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A journal file with a pending, a dead, a done and an old done entry."""
    file = tmp_path / "journal.db"
    asyncio.run(_fill(file))
    return file


def states(path: Path) -> dict[int, EntryState]:
    """Every entry's state, read straight from the file."""

    async def read() -> dict[int, EntryState]:
        async with SqliteJournal(path) as store:
            return {e.entry_id: e.state for e in await store.list(limit=100)}

    return asyncio.run(read())


# -- status ----------------------------------------------------------------------------------


def test_status_shows_counts_depth_age_and_dead(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status prints each state's count, the depth, the oldest pending age and a dead hint."""
    assert journal("status", "--journal", str(path)) == 0
    out = capsys.readouterr().out
    assert "pending:        2" in out
    assert "done:           2" in out
    assert "dead:           1" in out
    assert "depth:          2 (pending + in flight)" in out
    assert "oldest pending: 1h" in out
    assert "1 dead entry waits for an operator" in out


def test_status_json(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status --json gives the counts, depth, oldest age and dead count as numbers."""
    assert journal("status", "--journal", str(path), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"pending": 2, "in_flight": 0, "done": 2, "dead": 1}
    assert report["depth"] == 2
    assert report["oldest_pending_age_s"] == pytest.approx(3600.0)
    assert report["dead"] == 1


def test_status_of_an_empty_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty journal has no oldest pending entry and no dead hint."""
    file = tmp_path / "j.db"
    asyncio.run(SqliteJournal(file).close())
    assert journal("status", "--journal", str(file)) == 0
    out = capsys.readouterr().out
    assert "oldest pending: -" in out
    assert "operator" not in out


# -- files that are not journals ---------------------------------------------------------------


def test_missing_file_is_exit_3_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that does not exist is reported, and no empty journal appears there."""
    missing = tmp_path / "nope.db"
    assert journal("status", "--journal", str(missing)) == _journal.EXIT_NO_JOURNAL
    assert "no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_default_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --journal, CALLRESILIENCE_JOURNAL names the file."""
    monkeypatch.setenv("CALLRESILIENCE_JOURNAL", str(path))
    assert journal("status") == 0
    assert str(path) in capsys.readouterr().out


def test_default_path_is_the_engine_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --journal or the variable, the engine's default path is read, never created."""
    monkeypatch.delenv("CALLRESILIENCE_JOURNAL", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert journal("status") == _journal.EXIT_NO_JOURNAL
    assert str(tmp_path / "callresilience" / "journal.db") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_text_file_is_not_a_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file SQLite cannot read is refused with exit 4 and left as it was."""
    file = tmp_path / "notes.txt"
    file.write_text("hello " * 200)
    assert journal("list", "--journal", str(file)) == _journal.EXIT_BAD_JOURNAL
    assert "not a journal" in capsys.readouterr().err
    assert file.read_text() == "hello " * 200


@pytest.mark.parametrize("kind", ["empty", "other-database"])
def test_an_sqlite_file_without_the_tables_is_not_a_journal(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty file or another application's database is refused, and no table is added."""
    file = tmp_path / "other.db"
    file.touch()
    if kind == "other-database":
        with sqlite3.connect(file) as conn:
            conn.execute("CREATE TABLE things (x)")
        conn.close()
    assert journal("dead", "--journal", str(file)) == _journal.EXIT_BAD_JOURNAL
    assert "not a journal" in capsys.readouterr().err
    with sqlite3.connect(file) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "entries" not in tables


def test_a_directory_is_not_a_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory is refused with exit 4."""
    assert journal("status", "--journal", str(tmp_path)) == _journal.EXIT_BAD_JOURNAL
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(("version", "word"), [(99, "newer"), (1, "older")])
def test_another_schema_version_is_refused_untouched(
    path: Path, version: int, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A newer schema, or an older one this version would migrate, is refused as it is."""
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    assert journal("status", "--journal", str(path)) == _journal.EXIT_BAD_JOURNAL
    assert word in capsys.readouterr().err
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    conn.close()


def test_an_unopenable_store_is_exit_4(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error from the store while opening (e.g. no WAL) is exit 4, with the reason."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(_journal, "SqliteJournal", refuse)
    assert journal("status", "--journal", str(path)) == _journal.EXIT_BAD_JOURNAL
    assert "database is locked" in capsys.readouterr().err


# -- list and dead ---------------------------------------------------------------------------


def test_list_is_a_table_with_numbers_masked(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """list prints one row per entry; phone numbers show only masked."""
    assert journal("list", "--journal", str(path)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "CALL",
        "SEQ",
        "KIND",
        "TABLE",
        "TRIES",
        "UPDATED",
        "(UTC)",
        "FIELDS",
    ]
    assert len(lines) == 6
    assert ADA_NUMBER not in out
    assert BEN_NUMBER not in out
    assert "+14*******00" in out


def test_list_filters_by_state_call_and_limit(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--state, --call and --limit narrow the list."""
    assert journal("list", "--journal", str(path), "--state", "pending", "--json") == 0
    pending = json.loads(capsys.readouterr().out)
    assert {e["call_id"] for e in pending} == {"c1", "c4"}
    assert journal("list", "--journal", str(path), "--call", "c1", "--json") == 0
    assert [e["seq"] for e in json.loads(capsys.readouterr().out)] == [1, 2]
    assert journal("list", "--journal", str(path), "--limit", "1", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_list_of_nothing_says_so(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A filter that matches nothing prints 'no entries'."""
    assert journal("list", "--journal", str(path), "--call", "nobody") == 0
    assert capsys.readouterr().out.strip() == "no entries"


def test_list_refuses_a_call_id_that_cannot_exist(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --call value that is not an identifier is a usage error."""
    assert journal("list", "--journal", str(path), "--call", "no spaces") == 2
    assert "call_id" in capsys.readouterr().err


def test_json_masks_numbers_unless_asked(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json masks payloads and errors too; --show-payload shows them in full."""
    assert journal("list", "--journal", str(path), "--json") == 0
    masked = capsys.readouterr().out
    assert ADA_NUMBER not in masked
    assert BEN_NUMBER not in masked
    entries = json.loads(masked)
    assert entries[0]["payload"]["fields"]["phone_number"] == "+14*******00"
    assert journal("list", "--journal", str(path), "--json", "--show-payload") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["payload"]["fields"]["phone_number"] == ADA_NUMBER
    assert shown[2]["last_error"].endswith(f"{BEN_NUMBER})")


def test_show_payload_prints_full_fields(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--show-payload prints the fields uncut, numbers included."""
    assert journal("list", "--journal", str(path), "--show-payload") == 0
    assert ADA_NUMBER in capsys.readouterr().out


def test_dead_lists_dead_entries_with_their_error(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dead shows each dead entry and its last error, numbers masked."""
    assert journal("dead", "--journal", str(path)) == 0
    out = capsys.readouterr().out
    assert "c2" in out
    assert "c1" not in out
    assert "error: PermanentError: 403 Forbidden (caller +44********23)" in out
    assert BEN_NUMBER not in out


def test_long_fields_are_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A long payload is cut in the table, so rows stay readable."""
    file = tmp_path / "j.db"

    async def fill() -> None:
        async with SqliteJournal(file) as store:
            await store.append([Intent("c9", "create", {"text": "x" * 500}, "c9:x")], T0)

    asyncio.run(fill())
    assert journal("list", "--journal", str(file)) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.endswith("...")
    assert "x" * 100 not in row


# -- replay ----------------------------------------------------------------------------------


def test_replay_sends_a_dead_entry_back_to_pending(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay ID turns a dead entry pending and says so."""
    (dead_id,) = [i for i, s in states(path).items() if s is EntryState.DEAD]
    assert journal("replay", str(dead_id), "--journal", str(path)) == 0
    assert f"entry {dead_id} (call c2" in capsys.readouterr().out
    assert states(path)[dead_id] is EntryState.PENDING


def test_replay_all_dead(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--all-dead replays every dead entry."""
    assert journal("replay", "--all-dead", "--journal", str(path)) == 0
    assert "1 entry replayed" in capsys.readouterr().out
    assert EntryState.DEAD not in states(path).values()


def test_replay_all_dead_reads_every_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--all-dead reads the dead entries page by page before replaying any."""
    file = tmp_path / "j.db"

    async def fill() -> None:
        async with SqliteJournal(file) as store:
            intents = [Intent(f"c{n}", "create", {"n": n}, f"c{n}:x") for n in range(5)]
            await store.append(intents, T0)
            for entry in await store.claim("w", T0, 10, 60.0):
                await store.kill(entry.entry_id, "w", T0, "refused")

    asyncio.run(fill())
    monkeypatch.setattr(_journal, "_PAGE", 2)
    assert journal("replay", "--all-dead", "--journal", str(file)) == 0
    assert "5 entries replayed" in capsys.readouterr().out
    assert set(states(file).values()) == {EntryState.PENDING}


def test_replay_all_dead_with_none_dead(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--all-dead with nothing dead replays nothing and succeeds."""
    assert journal("replay", "--all-dead", "--journal", str(path)) == 0
    capsys.readouterr()
    assert journal("replay", "--all-dead", "--journal", str(path)) == 0
    assert "0 entries replayed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry_id", "message"),
    [("99", "entry 99: no such entry"), ("1", "entry 1: it is done, not dead")],
)
def test_replay_refuses_unknown_and_live_entries(
    path: Path, entry_id: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown id, or an entry that is not dead, refuses the whole replay with exit 1."""
    before = states(path)
    (dead_id,) = [i for i, s in before.items() if s is EntryState.DEAD]
    assert journal("replay", str(dead_id), entry_id, "--journal", str(path)) == 1
    err = capsys.readouterr().err
    assert "nothing was replayed" in err
    assert message in err
    assert states(path) == before


@pytest.mark.parametrize("argv", [[], ["3", "--all-dead"]])
def test_replay_needs_ids_or_all_dead(
    path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """replay with neither ids nor --all-dead, or with both, is a usage error."""
    assert journal("replay", *argv, "--journal", str(path)) == 2
    assert "ENTRY_ID... or --all-dead" in capsys.readouterr().err


def test_replay_reports_an_entry_that_changed_meanwhile(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry replayed by someone else between the check and the replay is reported."""
    (dead_id,) = [i for i, s in states(path).items() if s is EntryState.DEAD]
    real = SqliteJournal.replay

    async def twice(self: SqliteJournal, entry_id: int, now: float) -> object:
        await real(self, entry_id, now)
        return await real(self, entry_id, now)

    monkeypatch.setattr(SqliteJournal, "replay", twice)
    assert journal("replay", str(dead_id), "--journal", str(path)) == 1
    assert f"entry {dead_id}: not replayed" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["replay", "x1"], ["replay", "0"], ["list", "--limit", "0"]])
def test_ids_and_limits_must_be_positive_numbers(path: Path, argv: list[str]) -> None:
    """A non-numeric or zero entry id or limit is refused by the parser."""
    with pytest.raises(SystemExit) as exit_:
        journal(*argv, "--journal", str(path))
    assert exit_.value.code == 2


# -- purge -----------------------------------------------------------------------------------


def test_purge_deletes_old_done_entries_of_finished_calls(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge --older-than 7d removes only the done entry of the finished, month-old call."""
    before = states(path)
    assert journal("purge", "--older-than", "7d", "--journal", str(path)) == 0
    assert "purged 1 done entry of finished calls" in capsys.readouterr().out
    after = states(path)
    assert len(after) == len(before) - 1
    assert EntryState.DEAD in after.values()


def test_purge_keeps_done_entries_of_unfinished_calls(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even with a short age, the done phone log of call c1 stays: its Interaction is pending."""
    assert journal("purge", "--older-than", "1s", "--journal", str(path), clock=NOW) == 0
    remaining = states(path)
    assert EntryState.DONE in remaining.values()
    assert "purged 1 done entry" in capsys.readouterr().out


def test_purge_needs_older_than(path: Path) -> None:
    """--older-than is required."""
    with pytest.raises(SystemExit):
        journal("purge", "--journal", str(path))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 604800.0),
        ("12h", 43200.0),
        ("30m", 1800.0),
        ("45s", 45.0),
        ("1d12h", 129600.0),
        ("2w", 1209600.0),
        ("1.5h", 5400.0),
        (" 7D ", 604800.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations are a number and a unit, possibly several."""
    assert _journal.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "d7", "7 d", "-1d", "1d-2h"])
def test_parse_duration_refuses_other_text(text: str) -> None:
    """Anything else is refused with a message that shows the expected form."""
    with pytest.raises(argparse.ArgumentTypeError, match="such as 7d"):
        _journal.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (252, "4m 12s"), (3600, "1h"), (11100, "3h 5m"), (187200, "2d 4h")],
)
def test_format_age(seconds: float, text: str) -> None:
    """Ages read as at most two units."""
    assert _journal.format_age(seconds) == text


def test_mask_payload_masks_phone_keys_and_numbers_anywhere() -> None:
    """Any E.164 number is masked, and any value under a phone key even without a '+'."""
    masked = _journal.mask_payload(
        {
            "phone_number": "4155550100",
            "note": f"call from {ADA_NUMBER}",
            "list": [BEN_NUMBER],
            "n": 3,
            "empty_phone": "",
        }
    )
    assert masked == {
        "phone_number": "415*****00",
        "note": "call from +14*******00",
        "list": ["+44********23"],
        "n": 3,
        "empty_phone": "",
    }
