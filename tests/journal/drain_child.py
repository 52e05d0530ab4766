"""A worker process for the crash test: drain a SQLite journal into an instance until empty.

Usage: ``python drain_child.py JOURNAL URL``. Prints ``done`` and exits 0 when every entry is
done; the test kills it with SIGKILL long before that, at least once.
"""

from __future__ import annotations

import asyncio
import sys

from callresilience import SystemClock
from callresilience.journal import Drainer, DrainerConfig, EntryState, SqliteJournal
from callresilience.servicenow import BasicAuth, ServiceNowClient

# Short leases so the restarted worker takes over the dead one's entries quickly; the fake
# commits at once, so a short settle time is safe here (it is not against a real instance).
CONFIG = DrainerConfig(lease=12.0, settle=1.0, idle_poll=0.05, rate=200.0, concurrency=16)


async def main(journal: str, url: str) -> int:
    clock = SystemClock()
    async with (
        SqliteJournal(journal) as store,
        ServiceNowClient(url, auth=BasicAuth("sn", "pw"), read_timeout=5.0) as client,
        Drainer(store, client, CONFIG, clock=clock) as drainer,
    ):
        drainer.wake()
        while True:
            counts = await store.counts()
            if counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0:
                print("done", flush=True)
                return 0
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
