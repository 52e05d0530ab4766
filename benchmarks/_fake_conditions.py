"""Serve a FakeServiceNow in one instance condition, in its own process, for the offer path.

``python -m benchmarks._fake_conditions CONDITION [--rate-limit N] [--tls]`` prints the base
URL on its first line (and, with ``--tls``, the certificate to trust on the second), serves on
127.0.0.1 until SIGTERM, then prints one JSON line: the answers it gave, by status (``none``
for requests it never answered). Conditions:

- ``healthy``: no fault;
- ``slow``: every request answered after `SLOW_SECONDS`;
- ``blackholed``: every request accepted and never answered;
- ``rate_limited``: at most N Table API requests per second, then 429 with Retry-After.

With ``--tls`` the URL is ``https://``: a TLS-terminating proxy (`_tls.serve_tls`) in this
process forwards to the fake, for clients that refuse plain HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from callresilience.testing import BlackHole, FakeServiceNow, Latency, RateLimit

from ._tls import serve_tls

CONDITIONS = ("healthy", "slow", "blackholed", "rate_limited")
SLOW_SECONDS = 2.0
USER, PASSWORD = "bench", "bench-password"


def instance(condition: str, rate_limit: int) -> FakeServiceNow:
    """A fake in `condition`."""
    fake = FakeServiceNow(user=USER, password=PASSWORD, seed=17)
    fault = {
        "healthy": None,
        "slow": Latency(SLOW_SECONDS),
        "blackholed": BlackHole(),
        "rate_limited": RateLimit(rate_limit, per="second"),
    }[condition]
    if fault is not None:
        fake.faults.add(fault)
    return fake


@contextlib.asynccontextmanager
async def _front(url: str, tls: bool) -> AsyncIterator[list[str]]:
    """The lines to print: the fake's URL, or the TLS proxy's URL and its certificate."""
    if not tls:
        yield [url]
        return
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as folder:
        port = urlsplit(url).port
        assert port is not None
        async with serve_tls(port, Path(folder)) as (https_url, cert):
            yield [https_url, str(cert)]


async def _serve(condition: str, rate_limit: int, tls: bool) -> None:
    fake = instance(condition, rate_limit)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with fake.serve(port=0) as url, _front(url, tls) as lines:
        print("\n".join(lines), flush=True)
        await stop.wait()
        fake.release_black_holes()
    answers = Counter(str(r.status).lower() for r in fake.requests)
    print(json.dumps({"answers": answers}), flush=True)


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser()
    parser.add_argument("condition", choices=CONDITIONS)
    parser.add_argument("--rate-limit", type=int, default=10)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    asyncio.run(_serve(args.condition, args.rate_limit, args.tls))


if __name__ == "__main__":
    main()
