"""The three ways to put a call in front of an agent that the offer-path suite compares.

Each contender is an async context manager: given the instance, a number of agents and two
callbacks, it yields ``arrive(call_id)``, which the suite awaits when a call arrives. The
contender calls ``offered(call_id)`` at the moment it hands the offer to its agent channel,
and ``failed(call_id)`` when it gives up on a call without offering it. Every contender has
the same agents, all ready, who accept after `RING` seconds, talk for `HOLD` seconds and are
free again at once (no wrap-up).

- ``callresilience``: the `Engine` with a SQLite journal in a temporary folder, its defaults
  otherwise (auto-accept off, the client's 30 s read timeout); offered means its
  `AgentChannel.offer` was called. The records go to the instance from the journal, later.
- ``create_first_httpx``: what integrators write today: POST the Interaction with httpx
  (its default 5 s timeouts and pool of 100 connections), retried by tenacity with
  exponential backoff (0.5 s, 1 s, 2 s... at most 10 s between tries) on transport errors,
  429 and 5xx, for at most 30 s overall; then offer to the longest-idle free agent. A create
  that gives up raises, and the call is not offered (the Lambda's error branch).
- ``create_first_pysnc``: the same with ServiceNow's own Python client, `pysnc`: a
  `GlideRecord.insert()` run in a pool of `PYSNC_THREADS` threads, since pysnc is
  synchronous. Its only retries are its own (`auto_retry`, on by default): urllib3's
  ``Retry(total=4, backoff_factor=0.2, status_forcelist=[429, 500, 502, 503])``, whose
  default methods exclude POST, so an insert is retried on connection errors only; requests
  sets no timeout, so an unanswered insert waits for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import httpx
import pysnc
import tenacity

from callresilience import Agent, Call, RouterConfig
from callresilience.engine import Engine, EngineConfig, Offer
from callresilience.servicenow import BasicAuth

from ._fake_conditions import PASSWORD, USER

RING = 0.05  # seconds an offer rings before the agent accepts
HOLD = 0.2  # seconds the agent is on the call
QUEUE = "support"
CALLER = "+14155550100"
PYSNC_THREADS = 32  # what asyncio's default executor gives a machine with 28 cores or more
RETRY_FOR = 30.0  # the create-first adapters' overall retry budget, in seconds

Arrive = Callable[[str], Awaitable[None]]
Note = Callable[[str], None]


@attrs.frozen
class Instance:
    """Where a contender finds the fake: its base URL and, over TLS, the certificate to trust."""

    url: str
    cert: Path | None = None


Contender = Callable[[Instance, int, Note, Note], contextlib.AbstractAsyncContextManager[Arrive]]


class _Tasks:
    """The background tasks a contender started; cancelled together when it closes."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def cancel(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def _interaction(call_id: str) -> dict[str, str]:
    return {
        "type": "phone",
        "direction": "inbound",
        "correlation_id": call_id,
        "short_description": f"Inbound call from {CALLER}",
        "queue": QUEUE,
    }


class _Desk:
    """The create-first adapters' agents: the longest-idle free one takes the next offer."""

    def __init__(self, agents: int, offered: Note, tasks: _Tasks) -> None:
        self._free: asyncio.Queue[str] = asyncio.Queue()
        for n in range(agents):
            self._free.put_nowait(f"agent-{n}")
        self._offered = offered
        self._tasks = tasks

    async def offer(self, call_id: str) -> None:
        agent = await self._free.get()
        self._offered(call_id)
        self._tasks.start(self._answer(agent))

    async def _answer(self, agent: str) -> None:
        await asyncio.sleep(RING + HOLD)
        self._free.put_nowait(agent)


def _transient(error: BaseException) -> bool:
    """What the usual adapter retries: transport errors, 429 and 5xx."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status == 429 or status >= 500
    return isinstance(error, httpx.TransportError)


@contextlib.asynccontextmanager
async def _create_first(
    create: Callable[[str], Awaitable[object]], agents: int, offered: Note, failed: Note
) -> AsyncIterator[Arrive]:
    """Per call: `create` the Interaction, then offer; a create that raises loses the call."""
    tasks = _Tasks()
    desk = _Desk(agents, offered, tasks)

    async def handle(call_id: str) -> None:
        try:
            await create(call_id)
        except Exception:  # the adapter gives up: the call is not offered
            failed(call_id)
            return
        await desk.offer(call_id)

    async def arrive(call_id: str) -> None:
        tasks.start(handle(call_id))

    try:
        yield arrive
    finally:
        await tasks.cancel()


@contextlib.asynccontextmanager
async def create_first_httpx(
    instance: Instance, agents: int, offered: Note, failed: Note
) -> AsyncIterator[Arrive]:
    """Create the Interaction with httpx and tenacity, then offer."""
    async with httpx.AsyncClient(base_url=instance.url, auth=(USER, PASSWORD)) as http:

        @tenacity.retry(
            retry=tenacity.retry_if_exception(_transient),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            stop=tenacity.stop_after_delay(RETRY_FOR),
            reraise=True,
        )
        async def create(call_id: str) -> str:
            response = await http.post(
                "/api/now/table/interaction",
                json=_interaction(call_id),
                headers={"Accept": "application/json"},
            )
            response.raise_for_status()
            sys_id: str = response.json()["result"]["sys_id"]
            return sys_id

        async with _create_first(create, agents, offered, failed) as arrive:
            yield arrive


def pysnc_client(instance: Instance) -> pysnc.ServiceNowClient:
    """A pysnc client that trusts the instance's throwaway certificate, with its defaults."""
    client = pysnc.ServiceNowClient(instance.url, (USER, PASSWORD), verify=str(instance.cert))
    # requests lets REQUESTS_CA_BUNDLE override the session's `verify` (pysnc passes none per
    # request), so an environment that sets it would not trust the throwaway certificate.
    client.session.trust_env = False
    # More threads than pysnc's pool keeps connections (10) log "pool is full": noise here.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    return client


def pysnc_insert(client: pysnc.ServiceNowClient, table: str, values: dict[str, str]) -> str:
    """Insert one record the way pysnc's users do; return its sys_id (pysnc raises on failure)."""
    record = client.GlideRecord(table)
    record.initialize()
    for field, value in values.items():
        record.set_value(field, value)
    sys_id = record.insert()
    if not sys_id:
        raise RuntimeError(f"pysnc inserted nothing into {table}")
    return str(sys_id)


@contextlib.asynccontextmanager
async def create_first_pysnc(
    instance: Instance, agents: int, offered: Note, failed: Note
) -> AsyncIterator[Arrive]:
    """Create the Interaction with pysnc in a thread pool, then offer."""
    client = pysnc_client(instance)
    pool = ThreadPoolExecutor(PYSNC_THREADS, thread_name_prefix="pysnc")
    loop = asyncio.get_running_loop()

    async def create(call_id: str) -> str:
        return await loop.run_in_executor(
            pool, pysnc_insert, client, "interaction", _interaction(call_id)
        )

    try:
        async with _create_first(create, agents, offered, failed) as arrive:
            yield arrive
    finally:
        # Threads stuck in a request without a timeout end when the instance closes them.
        pool.shutdown(wait=False, cancel_futures=True)


class _Channel:
    """The engine's AgentChannel: notes the offer, then accepts after `RING` and ends."""

    def __init__(self, offered: Note, tasks: _Tasks) -> None:
        self._offered = offered
        self._tasks = tasks
        self.engine: Engine | None = None

    async def offer(self, agent: Agent, offer: Offer) -> None:
        self._offered(offer.call.call_id)
        self._tasks.start(self._answer(agent.agent_id, offer.call.call_id))

    async def _answer(self, agent_id: str, call_id: str) -> None:
        assert self.engine is not None
        await asyncio.sleep(RING)
        with contextlib.suppress(Exception):  # an offer that ended meanwhile
            await self.engine.accept(call_id, agent_id)
            await asyncio.sleep(HOLD)
            await self.engine.end(call_id)

    async def _nothing(self, agent: Agent, *details: object) -> None:
        """Withdrawals, notices and transfers: none happen here."""

    withdraw = notify = transfer = _nothing


@contextlib.asynccontextmanager
async def callresilience(
    instance: Instance, agents: int, offered: Note, failed: Note
) -> AsyncIterator[Arrive]:
    """The engine: offer from memory, journal the records, write them in the background."""
    tasks = _Tasks()
    channel = _Channel(offered, tasks)
    with tempfile.TemporaryDirectory(prefix="offer-path-") as folder:
        config = EngineConfig(
            instance.url,
            auth=BasicAuth(USER, PASSWORD),
            journal=Path(folder) / "journal.db",
            router=RouterConfig(wrap_up_time=0.0),
        )
        engine = channel.engine = Engine(config, channel)
        async with engine:
            for n in range(agents):
                agent = Agent(f"agent-{n}", queues=[QUEUE], user_sys_id=f"{n:032x}")
                await engine.login(agent, ready=True)

            async def arrive(call_id: str) -> None:
                await engine.call_arrived(Call(call_id, CALLER, QUEUE, time.monotonic()))

            try:
                yield arrive
            finally:
                await tasks.cancel()


CONTENDERS: dict[str, Contender] = {
    "callresilience": callresilience,
    "create_first_httpx": create_first_httpx,
    "create_first_pysnc": create_first_pysnc,
}
NEEDS_TLS = frozenset({"create_first_pysnc"})
