"""Serve a FakeServiceNow in its own process, healthy or black-holed, for the engine suite.

``python -m benchmarks._fake_blackhole [--black-hole]`` prints the base URL on its first line,
serves on 127.0.0.1 until SIGTERM, then prints one JSON line: the requests it saw by outcome
and the records in the phone log and Interaction tables. With ``--black-hole`` every request
is accepted and never answered (the client's read timeout ends it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter

from callresilience.testing import BlackHole, FakeServiceNow

TABLES = ("sn_openframe_phone_log", "interaction")


async def serve(black_hole: bool) -> None:
    fake = FakeServiceNow(user="sn", password="pw", seed=11)
    if black_hole:
        fake.faults.add(BlackHole())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with fake.serve(port=0) as url:
        print(url, flush=True)
        await stop.wait()
        fake.release_black_holes()
    requests = fake.requests
    print(
        json.dumps(
            {
                "requests": len(requests),
                "outcomes": Counter(
                    r.outcome if r.status is None else str(r.status) for r in requests
                ),
                "records": {table: len(fake.records(table)) for table in TABLES},
            }
        ),
        flush=True,
    )


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--black-hole", action="store_true")
    asyncio.run(serve(parser.parse_args().black_hole))


if __name__ == "__main__":
    main()
