"""Serve a FakeServiceNow in its own process, for benchmarks; report what it saw on SIGTERM.

``python -m benchmarks._fake_process [--rate-limit N]`` prints the base URL on its first line,
serves on 127.0.0.1 until SIGTERM, then prints one JSON line: the requests it answered by
status, the time span of the successful ones, and the correlation values in each table (so
the benchmark can count duplicates from the instance's side).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter

from callresilience.testing import FakeServiceNow, RateLimit

CORRELATION = {"sn_openframe_phone_log": "call_id", "interaction": "correlation_id"}


async def serve(rate_limit: int | None) -> None:
    fake = FakeServiceNow(user="sn", password="pw", seed=5)
    if rate_limit:
        fake.faults.add(RateLimit(rate_limit, per="second"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with fake.serve(port=0) as url:
        print(url, flush=True)
        await stop.wait()
    requests = fake.requests
    ok = [r.at for r in requests if r.status in (200, 201)]
    print(
        json.dumps(
            {
                "requests": len(requests),
                "statuses": Counter(str(r.status) for r in requests),
                "ok_span": [min(ok), max(ok)] if ok else None,
                "ok": len(ok),
                "limited_at": [r.at - min(ok) for r in requests if r.status == 429] if ok else [],
                "values": {
                    table: [r.get(field, "") for r in fake.records(table)]
                    for table, field in CORRELATION.items()
                },
            }
        ),
        flush=True,
    )


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-limit", type=int, default=None)
    asyncio.run(serve(parser.parse_args().rate_limit))


if __name__ == "__main__":
    main()
