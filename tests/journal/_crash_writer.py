"""A process that writes to a journal until it is killed (run by test_sqlite.py).

Usage: ``python _crash_writer.py PATH``. It claims ten entries with a 60 s lease at T0 and
prints ``claimed <id>`` for each, then appends forever, 50 concurrent appends at a time, and
prints ``appended <key>`` for each append that has returned. The test SIGKILLs it mid-way.
"""

from __future__ import annotations

import asyncio
import sys

from callresilience.journal import Intent, SqliteJournal

T0 = 1_767_225_600.0


async def main(path: str) -> None:
    """Claim, then append until killed."""
    journal = SqliteJournal(path)

    async def append(n: int) -> None:
        key = f"c{n}:phone_log"
        await journal.append([Intent(f"c{n}", "create_phone_log", {"n": n}, key)], T0)
        print(f"appended {key}", flush=True)

    await asyncio.gather(*(append(n) for n in range(10)))
    for entry in await journal.claim("doomed", T0, 10, 60):
        print(f"claimed {entry.entry_id}", flush=True)
    n = 10
    while True:
        await asyncio.gather(*(append(n + k) for k in range(50)))
        n += 50


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
