"""The ServiceNow client over real HTTP: creates per second, by transport and concurrency.

The FakeServiceNow runs in a **separate process** on 127.0.0.1, so client and server do not
share an event loop (as in production, where they do not even share a machine). Side by side,
in one run, POST creates into `sn_openframe_phone_log` with Basic auth, at concurrency 1 and 32:

- ``client/httpx``: `ServiceNowClient.create` on httpx's own transport;
- ``client/aiohttp``: `ServiceNowClient.create` on `aiohttp_transport()`;
- ``create_once/httpx`` and ``create_once/aiohttp``: `create_once(..., lookup_first=False)`,
  which on a healthy instance is one POST;
- ``raw/httpx`` and ``raw/aiohttp``: `httpx.AsyncClient.post` on the same two transports (bare
  httpx-aiohttp, without our error-mapping wrapper), with the same body and headers, the
  answer's status checked and ``result`` unwrapped;
- ``raw/aiohttp-session``: `aiohttp.ClientSession.post`, the ceiling for Python here;
- ``pysnc``: ServiceNow's own Python client, `GlideRecord.insert()` (the offer-path suite's
  code, ``benchmarks._contenders``), run in a pool of as many threads as the top concurrency
  (32), since pysnc is synchronous: at concurrency c, c workers each wait on one insert in the
  pool at a time. pysnc accepts only ``https://`` URLs, so it reaches a second fake, in its
  own process, through a TLS-terminating proxy in that process (``benchmarks._tls``); its
  requests session keeps 10 connections, so at c=32 it opens (and closes) extra ones, each
  with a TLS handshake, as it does for its users;
- ``raw/httpx-tls``: ``raw/httpx`` against that same TLS fake: what TLS and the proxy cost,
  so that the pysnc figure can be read against httpx on the same path.

Each measurement opens its own client, warms it up (its connections are open and the rate is
known: 4 creates per worker, at least 50; 2 and 30 in quick mode) and times a fixed number of
creates: the number is sized once per candidate and concurrency from the first warm-up, to
take about 0.3 s (quick, at least 100 creates) or 2 s (at least 200). The candidates take
turns, round after round, so that whatever else runs on the machine slows them alike; the
figure is the median of the rounds. The client's overhead is the raw httpx rate divided by the
client's rate on the same transport (1.0: none).

Every figure includes the fake's own cost: one Python process running uvicorn's h11 protocol
on the same two cores, which is what caps the ceiling here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import httpx
import httpx_aiohttp

from callresilience.servicenow import BasicAuth, ServiceNowClient, aiohttp_transport

from ._common import table
from ._contenders import Instance, pysnc_client, pysnc_insert

CONCURRENCIES = (1, 32)
TABLE = "sn_openframe_phone_log"
PATH = f"/api/now/table/{TABLE}"
USER, PASSWORD = "bench", "bench-password"
TARGET_OVERHEAD = 1.3
_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)
_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
}

_SERVER = """
import sys
from callresilience.cli import main
sys.exit(main(["fake-servicenow", "--port", "0", "--lenient-tables", *sys.argv[1:]]))
"""

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Sizes:
    """How long each timed run lasts, and how much warm-up and counting it gets."""

    seconds: float  # each timed run's aim
    warm_per_worker: int  # warm-up creates per worker...
    warm_least: int  # ...and at least this many
    least: int  # timed creates, at least
    repetitions: int  # rounds; the figure is their median


QUICK = Sizes(seconds=0.3, warm_per_worker=2, warm_least=30, least=100, repetitions=3)
FULL = Sizes(seconds=2.0, warm_per_worker=4, warm_least=50, least=200, repetitions=5)

Send = Callable[[int], Awaitable[None]]
Candidate = Callable[[Instance], contextlib.AbstractAsyncContextManager[Send]]


@contextlib.contextmanager
def serve_fake(*, tls: bool = False) -> Iterator[Instance]:
    """Run the FakeServiceNow in its own process on 127.0.0.1; yield where to find it.

    With `tls`, the fake is the offer-path suite's healthy one behind its TLS proxy
    (``benchmarks._fake_conditions``), and the instance carries the certificate to trust.
    """
    if tls:
        command = [sys.executable, "-m", "benchmarks._fake_conditions", "healthy", "--tls"]
    else:
        command = [sys.executable, "-c", _SERVER, "--user", USER, "--password", PASSWORD]
    # Our own interpreter running our own code: nothing here comes from outside.
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # noqa: S603
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        cert = Path(server.stdout.readline().strip()) if tls else None
        if not base_url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
            raise RuntimeError(f"the fake did not start (exit status {server.wait()})")
        yield Instance(base_url, cert)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def default_transport() -> str:
    """Name the transport `ServiceNowClient` builds when `transport=` is left unset."""
    client = ServiceNowClient("http://127.0.0.1", auth=BasicAuth(USER, PASSWORD))
    # A private attribute, but the honest answer: what the client really built (nothing is
    # opened until a request is sent, so there is nothing to close).
    built = client._http._transport
    return "httpx" if isinstance(built, httpx.AsyncHTTPTransport) else "aiohttp"


def _payload(n: int) -> dict[str, str]:
    return {
        "call_id": f"bench-{n:08d}",
        "phone_number": "+14155550100",
        "direction": "inbound",
        "queue": "support",
    }


def _unwrap(status: int, body: Any) -> dict[str, Any]:
    if status != 201 or not isinstance(body, dict) or not isinstance(body.get("result"), dict):
        raise RuntimeError(f"create answered {status}")
    result: dict[str, Any] = body["result"]
    return result


def _httpx_transport(instance: Instance | None = None) -> httpx.AsyncBaseTransport:
    # What httpx.AsyncClient builds when given no transport (limits included), trusting the
    # instance's throwaway certificate when it has one.
    if instance is None or instance.cert is None:
        return httpx.AsyncHTTPTransport()
    return httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=instance.cert))


def _bare_aiohttp_transport(instance: Instance | None = None) -> httpx.AsyncBaseTransport:
    # The same as aiohttp_transport() builds, without our error-mapping wrapper.
    transport: httpx.AsyncBaseTransport = httpx_aiohttp.AiohttpTransport(
        limits=httpx.Limits(max_connections=100)
    )
    return transport


def _client(make: Callable[[], httpx.AsyncBaseTransport], *, once: bool) -> Candidate:
    @contextlib.asynccontextmanager
    async def candidate(instance: Instance) -> AsyncIterator[Send]:
        auth = BasicAuth(USER, PASSWORD)
        async with ServiceNowClient(instance.url, auth=auth, transport=make()) as client:

            async def create(n: int) -> None:
                await client.create(TABLE, _payload(n))

            async def create_once(n: int) -> None:
                payload = _payload(n)
                result = await client.create_once(
                    TABLE, payload, correlation=("call_id", payload["call_id"]), lookup_first=False
                )
                assert result.created

            yield create_once if once else create

    return candidate


def _raw_httpx(make: Callable[[Instance], httpx.AsyncBaseTransport]) -> Candidate:
    @contextlib.asynccontextmanager
    async def candidate(instance: Instance) -> AsyncIterator[Send]:
        transport = make(instance)
        async with httpx.AsyncClient(transport=transport, timeout=_TIMEOUT) as client:
            url = instance.url + PATH

            async def create(n: int) -> None:
                response = await client.post(url, json=_payload(n), headers=_HEADERS)
                _unwrap(response.status_code, response.json())

            yield create

    return candidate


@contextlib.asynccontextmanager
async def _raw_aiohttp(instance: Instance) -> AsyncIterator[Send]:
    timeout = aiohttp.ClientTimeout(sock_connect=5.0, sock_read=30.0, connect=5.0)
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        url = instance.url + PATH

        async def create(n: int) -> None:
            async with session.post(url, json=_payload(n), headers=_HEADERS) as response:
                _unwrap(response.status, await response.json())

        yield create


@contextlib.asynccontextmanager
async def _pysnc(instance: Instance) -> AsyncIterator[Send]:
    client = pysnc_client(instance)
    pool = ThreadPoolExecutor(max(CONCURRENCIES), thread_name_prefix="pysnc")
    loop = asyncio.get_running_loop()

    async def create(n: int) -> None:
        await loop.run_in_executor(pool, pysnc_insert, client, TABLE, _payload(n))

    try:
        yield create
    finally:
        pool.shutdown(wait=True)
        client.session.close()


CANDIDATES: dict[str, Candidate] = {
    "client/httpx": _client(_httpx_transport, once=False),
    "client/aiohttp": _client(aiohttp_transport, once=False),
    "create_once/httpx": _client(_httpx_transport, once=True),
    "create_once/aiohttp": _client(aiohttp_transport, once=True),
    "raw/httpx": _raw_httpx(_httpx_transport),
    "raw/aiohttp": _raw_httpx(_bare_aiohttp_transport),
    "raw/aiohttp-session": _raw_aiohttp,
    "raw/httpx-tls": _raw_httpx(_httpx_transport),
    "pysnc": _pysnc,
}
OVER_TLS = frozenset({"raw/httpx-tls", "pysnc"})


async def _drive(send: Send, numbers: Iterator[int], *, requests: int, concurrency: int) -> float:
    """Send `requests` creates from `concurrency` workers; return creates per second."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send(next(numbers))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def _session(
    candidate: Candidate,
    instance: Instance,
    numbers: Iterator[int],
    *,
    concurrency: int,
    requests: int | None,
    sizes: Sizes,
) -> tuple[int, float]:
    """Open a client, warm it up, time `requests` creates; return the count and the rate.

    With `requests` None, the count is sized from the warm-up rate to take about
    `sizes.seconds`.
    """
    async with candidate(instance) as send:
        # Opens the connections (and, the first time, gives the rate to size the count from).
        warm_up = max(sizes.warm_least, sizes.warm_per_worker * concurrency)
        warm = await _drive(send, numbers, requests=warm_up, concurrency=concurrency)
        if requests is None:
            requests = max(sizes.least, int(round(warm * sizes.seconds, -2)))
        return requests, await _drive(send, numbers, requests=requests, concurrency=concurrency)


async def _measure_all(plain: Instance, tls: Instance, sizes: Sizes) -> dict[str, dict[str, Any]]:
    """Measure every candidate at every concurrency; return the medians and the runs."""
    numbers = itertools.count()  # every create has its own call_id
    breakdown: dict[str, dict[str, Any]] = {name: {} for name in CANDIDATES}
    for concurrency in CONCURRENCIES:
        counts: dict[str, int] = {}
        rates: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        # Round-robin: whatever else the machine is doing slows every candidate alike, rather
        # than whoever happened to run at that moment.
        for _ in range(sizes.repetitions):
            for name, candidate in CANDIDATES.items():
                counts[name], rate = await _session(
                    candidate,
                    tls if name in OVER_TLS else plain,
                    numbers,
                    concurrency=concurrency,
                    requests=counts.get(name),
                    sizes=sizes,
                )
                rates[name].append(rate)
        for name, runs in rates.items():
            breakdown[name][str(concurrency)] = {
                "creates_per_s": round(statistics.median(runs)),
                "requests_per_repetition": counts[name],
                "repetitions": [round(rate) for rate in runs],
            }
    return breakdown


def _rate(breakdown: dict[str, Any], name: str, concurrency: int) -> int:
    rate: int = breakdown[name][str(concurrency)]["creates_per_s"]
    return rate


def run(*, quick: bool) -> dict[str, Any]:
    """Run the client suite and print its table."""
    sizes = QUICK if quick else FULL
    with serve_fake() as plain, serve_fake(tls=True) as tls:
        breakdown = asyncio.run(_measure_all(plain, tls, sizes))
    top = max(CONCURRENCIES)
    default = default_transport()
    overhead = {
        transport: {
            str(c): round(
                _rate(breakdown, f"raw/{transport}", c)
                / _rate(breakdown, f"client/{transport}", c),
                2,
            )
            for c in CONCURRENCIES
        }
        for transport in ("httpx", "aiohttp")
    }
    results: dict[str, Any] = {
        "default_transport": default,
        "creates_per_s": _rate(breakdown, f"client/{default}", top),
        "create_once_per_s": _rate(breakdown, f"create_once/{default}", top),
        "httpx_raw_creates_per_s": _rate(breakdown, "raw/httpx", top),
        "aiohttp_raw_creates_per_s": _rate(breakdown, "raw/aiohttp-session", top),
        "pysnc_creates_per_s": _rate(breakdown, "pysnc", top),
        "httpx_raw_tls_creates_per_s": _rate(breakdown, "raw/httpx-tls", top),
        "concurrency": top,
        "pysnc_threads": max(CONCURRENCIES),
        "client_overhead_ratio": {t: by_c[str(top)] for t, by_c in overhead.items()},
        "client_overhead_ratio_by_concurrency": overhead,
        "by_candidate": breakdown,
        "seconds_per_repetition": sizes.seconds,
        "repetitions": sizes.repetitions,
    }
    rows = []
    for name in CANDIDATES:
        figures = "  ".join(f"{_rate(breakdown, name, c):>6,}/s" for c in CONCURRENCIES)
        note = "(default)" if name == f"client/{default}" else ""
        if name in OVER_TLS:
            note = "over TLS, through the proxy"
        if name == "pysnc":
            note += f"; {max(CONCURRENCIES)} threads"
        rows.append((name, figures, note))
    for transport, by_c in overhead.items():
        figures = "  ".join(f"{by_c[str(c)]:>7.2f}x" for c in CONCURRENCIES)
        rows.append((f"overhead vs raw, {transport}", figures, f"aim <= {TARGET_OVERHEAD}x"))
    header = "  ".join(f"{'c=' + str(c):>8}" for c in CONCURRENCIES)
    rows.insert(0, ("", header, ""))
    table(
        f"client: POST creates over loopback HTTP to the fake, median of {sizes.repetitions} "
        f"rounds of about {sizes.seconds:g} s each",
        rows,
    )
    return results
