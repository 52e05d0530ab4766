"""`callresilience journal`: look into a journal file, replay dead entries, purge old ones.

Every action opens an existing journal only: a path that does not exist is an error, never a
new empty journal. The file is inspected read-only first, so a file that is not a journal, or
one written by another version, is refused before the store touches it.

Exit status: 0 done; 1 the journal refused the operation (an unknown entry id, a replay of an
entry that is not dead); 2 a usage error; 3 no journal at the path; 4 the file cannot be used
as a journal (not one, another schema version, unreadable).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from .._model import mask_phone
from ..journal import Entry, EntryState, JournalError, SqliteJournal, UnknownEntry
from ..journal._sqlite import SCHEMA_VERSION

__all__ = ["EXIT_BAD_JOURNAL", "EXIT_NO_JOURNAL", "EXIT_REFUSED", "parse_duration", "register"]

EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_JOURNAL: Final = 3
EXIT_BAD_JOURNAL: Final = 4

#: The variable that names the journal when --journal is not given.
JOURNAL_VARIABLE: Final = "CALLRESILIENCE_JOURNAL"

_PHONE_RE: Final = re.compile(r"\+[0-9]{7,15}")
_DURATION_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PAYLOAD_WIDTH: Final = 60
_PAGE = 500  # dead entries read per query by --all-dead

Action = Callable[[SqliteJournal, argparse.Namespace, float, TextIO], Awaitable[int]]


class _Refused(Exception):
    """The command cannot go on; the message goes to stderr, the code is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_duration(text: str) -> float:
    """Return the seconds in a duration such as ``7d``, ``12h``, ``90m`` or ``1d12h``.

    Raises:
        argparse.ArgumentTypeError: The text is not a duration.
    """
    cleaned = text.strip().lower()
    if not cleaned or _DURATION_RE.sub("", cleaned):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; give a number and a unit (s, m, h, d or w), "
            "such as 7d, 12h or 1d12h"
        )
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION_RE.findall(cleaned))


def _entry_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an entry id (a whole number >= 1)")
    return int(text)


def _limit(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a limit (a whole number >= 1)")
    return int(text)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Add the `journal` subcommand and its actions.

    Args:
        commands: The sub-parsers of the `callresilience` parser.
        clock: Where the current UNIX time comes from (for ages, replays and purges).
    """
    parser = commands.add_parser(
        "journal",
        help="inspect a journal file, replay dead entries, purge old ones",
        description=(
            "Inspect a callresilience journal (the SQLite file of EngineConfig.journal), replay "
            "its dead entries and purge old done ones. Safe while the service runs."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--journal",
        metavar="PATH",
        type=Path,
        help=f"the journal file (default: ${JOURNAL_VARIABLE}, else the engine's default path)",
    )
    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument("--json", action="store_true", help="print JSON instead of a table")
    shown.add_argument(
        "--show-payload",
        action="store_true",
        help="print payloads in full, phone numbers included (default: numbers are masked)",
    )

    def add(
        name: str, action: Action, help_text: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[where, *parents], help=help_text)
        sub.set_defaults(handler=functools.partial(_run, action, clock))
        return sub

    status = add("status", _status, "entries by state, depth, oldest pending age, dead count")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    listing = add("list", _list, "list entries, oldest first", shown)
    listing.add_argument("--state", choices=[state.value for state in EntryState])
    listing.add_argument("--call", metavar="CALL_ID", help="only the entries of this call")
    listing.add_argument("--limit", type=_limit, default=50, help="at most this many (50)")

    dead = add("dead", _dead, "list dead entries with their last error", shown)
    dead.add_argument("--limit", type=_limit, default=100, help="at most this many (100)")

    replay = add("replay", _replay, "send dead entries back to pending, due now")
    replay.add_argument("entry_ids", nargs="*", type=_entry_id, metavar="ENTRY_ID")
    replay.add_argument("--all-dead", action="store_true", help="replay every dead entry")

    purge = add("purge", _purge, "delete old done entries of finished calls")
    purge.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="only entries last updated at least this long ago: 7d, 12h, 30m, 1d12h...",
    )


def _run(action: Action, clock: Callable[[], float], args: argparse.Namespace) -> int:
    path: Path | None = args.journal
    if path is None:
        named = os.environ.get(JOURNAL_VARIABLE)
        if named:
            path = Path(named)
        else:
            from ..engine import default_journal_path  # noqa: PLC0415 (keep --help light)

            path = default_journal_path()
    try:
        _inspect(path)
        return asyncio.run(_open_and(action, path, args, clock()))
    except _Refused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return refused.code


def _inspect(path: Path) -> None:
    """Refuse, without writing anything, a path that does not hold a journal of this version."""
    if not path.exists():
        raise _Refused(
            EXIT_NO_JOURNAL,
            f"{path}: no such file, so there is no journal to read (nothing was created); "
            f"give the journal's path with --journal or ${JOURNAL_VARIABLE}",
        )
    if not path.is_file():
        raise _Refused(EXIT_BAD_JOURNAL, f"{path}: not a regular file, so not a journal")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise _Refused(
            EXIT_BAD_JOURNAL, f"{path}: not a journal: SQLite cannot read it ({error})"
        ) from None
    if version > SCHEMA_VERSION:
        raise _Refused(
            EXIT_BAD_JOURNAL,
            f"{path}: journal schema version {version} is newer than this callresilience "
            f"reads ({SCHEMA_VERSION}); use the callresilience version that wrote it",
        )
    if version < 1 or not {"entries", "calls"} <= tables:
        raise _Refused(
            EXIT_BAD_JOURNAL,
            f"{path}: not a journal: an SQLite file without the journal's tables",
        )
    if version < SCHEMA_VERSION:
        raise _Refused(
            EXIT_BAD_JOURNAL,
            f"{path}: journal schema version {version} is older than this callresilience "
            f"reads ({SCHEMA_VERSION}); upgrade the service first (it migrates the file when "
            "it opens it), so that a service still on the older version is not locked out",
        )


async def _open_and(action: Action, path: Path, args: argparse.Namespace, now: float) -> int:
    try:
        journal = SqliteJournal(path)
    except (JournalError, sqlite3.Error) as error:
        raise _Refused(EXIT_BAD_JOURNAL, f"{path}: cannot open the journal ({error})") from None
    async with journal:
        return await action(journal, args, now, sys.stdout)


# -- the actions ------------------------------------------------------------------------------


async def _status(journal: SqliteJournal, args: argparse.Namespace, now: float, out: TextIO) -> int:
    counts = await journal.counts()
    oldest = await journal.oldest_pending(now)
    depth = counts[EntryState.PENDING] + counts[EntryState.IN_FLIGHT]
    dead = counts[EntryState.DEAD]
    if args.json:
        report = {
            "journal": journal.path,
            "counts": {state.value: count for state, count in counts.items()},
            "depth": depth,
            "oldest_pending_age_s": oldest,
            "dead": dead,
        }
        print(json.dumps(report, indent=2), file=out)
        return 0
    rows = [
        ("journal", journal.path),
        ("pending", str(counts[EntryState.PENDING])),
        ("in flight", str(counts[EntryState.IN_FLIGHT])),
        ("done", str(counts[EntryState.DONE])),
        ("dead", str(dead)),
        ("depth", f"{depth} (pending + in flight)"),
        ("oldest pending", "-" if oldest is None else format_age(oldest)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name + ':':<{width + 1}} {value}", file=out)
    if dead:
        print(
            f"{dead} dead {_plural(dead, 'entry waits', 'entries wait')} for an operator: "
            f"callresilience journal dead --journal {journal.path}",
            file=out,
        )
    return 0


async def _list(journal: SqliteJournal, args: argparse.Namespace, now: float, out: TextIO) -> int:
    state = None if args.state is None else EntryState(args.state)
    try:
        entries = await journal.list(state=state, call_id=args.call, limit=args.limit)
    except ValueError as error:  # InvalidInput: a call id that cannot exist
        raise _Refused(EXIT_USAGE, str(error)) from None
    _print_entries(entries, args, out, errors=False)
    return 0


async def _dead(journal: SqliteJournal, args: argparse.Namespace, now: float, out: TextIO) -> int:
    entries = await journal.dead(limit=args.limit)
    _print_entries(entries, args, out, errors=True)
    return 0


async def _replay(journal: SqliteJournal, args: argparse.Namespace, now: float, out: TextIO) -> int:
    if bool(args.entry_ids) == bool(args.all_dead):
        raise _Refused(EXIT_USAGE, "give ENTRY_ID... or --all-dead (one of them)")
    if args.all_dead:
        ids = await _all_dead_ids(journal)
    else:
        ids = list(dict.fromkeys(args.entry_ids))
        await _check_replayable(journal, ids)
    replayed = 0
    for entry_id in ids:
        try:
            entry = await journal.replay(entry_id, now)
        except JournalError as error:  # changed since we looked (another operator, a purge)
            print(f"entry {entry_id}: not replayed: {error}", file=out)
            continue
        replayed += 1
        print(
            f"entry {entry.entry_id} (call {entry.call_id}, {entry.kind}): replayed, "
            "pending and due now",
            file=out,
        )
    print(f"{replayed} {_plural(replayed, 'entry', 'entries')} replayed", file=out)
    return 0 if replayed == len(ids) else EXIT_REFUSED


async def _all_dead_ids(journal: SqliteJournal) -> list[int]:
    """Every dead entry's id, read before replaying any (a replayed entry may die again)."""
    ids: list[int] = []
    while True:
        page = await journal.list(state=EntryState.DEAD, limit=_PAGE, offset=len(ids))
        ids += [entry.entry_id for entry in page]
        if len(page) < _PAGE:
            return ids


async def _check_replayable(journal: SqliteJournal, ids: Sequence[int]) -> None:
    """Refuse the whole replay, before any change, if one of the ids cannot be replayed."""
    problems: list[str] = []
    for entry_id in ids:
        try:
            entry = await journal.get(entry_id)
        except UnknownEntry:
            problems.append(f"entry {entry_id}: no such entry (never appended, or purged)")
            continue
        if entry.state is not EntryState.DEAD:
            problems.append(
                f"entry {entry_id}: it is {entry.state.value}, not dead; only dead entries are "
                "replayed (pending and in-flight ones run by themselves)"
            )
    if problems:
        raise _Refused(EXIT_REFUSED, "nothing was replayed:\n  " + "\n  ".join(problems))


async def _purge(journal: SqliteJournal, args: argparse.Namespace, now: float, out: TextIO) -> int:
    purged = await journal.purge_done(args.older_than, now)
    print(
        f"purged {purged} done {_plural(purged, 'entry', 'entries')} of finished calls, last "
        f"updated at least {format_age(args.older_than)} ago",
        file=out,
    )
    return 0


# -- output -----------------------------------------------------------------------------------


def mask_text(text: str) -> str:
    """Mask every E.164-looking number in a text."""
    return _PHONE_RE.sub(lambda match: mask_phone(match.group()), text)


def mask_payload(value: Any, key: str = "") -> Any:
    """Return a JSON value with phone numbers masked: E.164 anywhere, any value of a phone key."""
    if isinstance(value, Mapping):
        return {name: mask_payload(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [mask_payload(item, key) for item in value]
    if isinstance(value, str):
        return mask_phone(value) if "phone" in key.lower() and value else mask_text(value)
    return value


def format_age(seconds: float) -> str:
    """Say a duration the way people read it: ``45s``, ``4m 12s``, ``3h 5m``, ``2d 4h``."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(unix))


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _entry_json(entry: Entry, *, show_payload: bool) -> dict[str, Any]:
    def hide(value: Any) -> Any:
        return value if show_payload or value is None else mask_payload(value)

    return {
        "entry_id": entry.entry_id,
        "call_id": entry.call_id,
        "seq": entry.seq,
        "kind": entry.kind,
        "key": entry.key,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "next_attempt": entry.next_attempt,
        "lease_owner": entry.lease_owner,
        "lease_until": entry.lease_until,
        "last_error": hide(entry.last_error),
        "created": entry.created,
        "updated": entry.updated,
        "group": entry.group,
        "payload": hide(dict(entry.payload)),
        "result": hide(None if entry.result is None else dict(entry.result)),
    }


def _print_entries(
    entries: Sequence[Entry], args: argparse.Namespace, out: TextIO, *, errors: bool
) -> None:
    if args.json:
        shown = [_entry_json(entry, show_payload=args.show_payload) for entry in entries]
        print(json.dumps(shown, indent=2, ensure_ascii=False), file=out)
        return
    if not entries:
        print("no entries", file=out)
        return
    header = ("ID", "STATE", "CALL", "SEQ", "KIND", "TABLE", "TRIES", "UPDATED (UTC)", "FIELDS")
    rows = [header]
    for entry in entries:
        fields = entry.payload.get("fields", dict(entry.payload))
        payload = json.dumps(
            fields if args.show_payload else mask_payload(fields),
            separators=(",", ":"),
            ensure_ascii=False,
        )
        if not args.show_payload and len(payload) > _PAYLOAD_WIDTH:
            payload = payload[: _PAYLOAD_WIDTH - 3] + "..."
        rows.append(
            (
                str(entry.entry_id),
                entry.state.value,
                entry.call_id,
                str(entry.seq),
                entry.kind,
                str(entry.payload.get("table", "-")),
                str(entry.attempts),
                _utc(entry.updated),
                payload,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
        if errors and index and entries[index - 1].last_error:
            error = entries[index - 1].last_error or ""
            print(f"    error: {error if args.show_payload else mask_text(error)}", file=out)
