"""A seeded harness: the whole engine against the FakeServiceNow, on virtual time, recorded.

The engine is real (router, journal, drainer, client); so is the FakeServiceNow, reached in
process through its httpx transport, with a fault schedule. Only the people are scripted: each
call has a script (when it arrives, how its agents answer, hold, talk, when its caller gives
up), drawn from the run's seed. Everything waits on one `ManualClock`; the harness moves it
from one due moment to the next and lets every task run at each, so a run is deterministic
and takes no wall-clock time to wait.

What the run records goes into a `RunHistory` (see `_checker`), through three small wrappers:
the agents' channel, a journal store that writes down every transition, and a transport that
writes down every request the client sends (and can turn some into permanent errors); a Batch
API request is written down as itself and as each Table API request it carries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import itertools
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import httpx

from callresilience import Agent, Call, CallResilienceError, ModeConfig
from callresilience.engine import Engine, EngineConfig, Notice, Offer, RecordMapping
from callresilience.health import Mode
from callresilience.journal import (
    DrainerConfig,
    Entry,
    EntryState,
    Intent,
    JournalStore,
    MemoryJournal,
    SqliteJournal,
)
from callresilience.resilience import Backoff, BreakerConfig
from callresilience.routing import (
    CallAbandoned,
    CallEnded,
    CallOverflowed,
    CallState,
    OfferOutcome,
    QueueConfig,
    RouterConfig,
)
from callresilience.servicenow import OAuth2ClientCredentials
from callresilience.testing import (
    BlackHole,
    BrokenOk,
    DropResponse,
    FakeServiceNow,
    Fault,
    Hibernating,
    Latency,
    ManualClock,
    RateLimit,
    RefuseConnections,
    ServiceUnavailable,
)

from ._checker import (
    CallPlan,
    ChannelCall,
    Expectations,
    FaultWindow,
    RunHistory,
    Sent,
    Step,
    Transition,
)

QUEUE = "support"
SCOPES = ("region:emea", "region:amer")
CLIENT_ID, CLIENT_SECRET = "harness-client", "harness-secret"  # the fake's throwaway app
_TABLE_PATH = re.compile(r"^/api/now(?:/v[12])?/table/([^/]+)(?:/([^/]+))?/?$")
_BATCH_PATH = re.compile(r"^/api/now(?:/v1)?/batch/?$")
_TERMINAL = (CallEnded, CallAbandoned, CallOverflowed)
#: Turns of the event loop at one virtual instant after which the harness calls it a livelock.
SPIN_LIMIT = 5_000
#: How far the harness moves the clock to end such a spin, and how many spins it accepts.
NUDGE, MAX_SPINS = 1e-6, 200
#: Real seconds a journal store may stay busy on its thread before the harness gives up on it.
STORE_WAIT_LIMIT = 60.0


class Livelock(AssertionError):
    """Something loops at one virtual instant, waiting on a zero-second sleep.

    On a real clock such a loop ends when time moves on (after burning a core meanwhile); on
    a `ManualClock` it never does. The harness records each spin and moves the clock on by
    `NUDGE`; more than `MAX_SPINS` in one run is an error.
    """


def _busy_tasks() -> set[str]:
    names = set()
    for task in asyncio.all_tasks():
        frame = task.get_coro().cr_frame if hasattr(task.get_coro(), "cr_frame") else None
        where = f"{frame.f_code.co_qualname}:{frame.f_lineno}" if frame is not None else "?"
        names.add(f"{task.get_name()} at {where}")
    return names


# -- what a run is made of -----------------------------------------------------------------------


@attrs.frozen
class CallScript:
    """One caller and the agents' answers to its offers.

    Attributes:
        call_id: The call.
        arrive: When it arrives (virtual seconds).
        answers: Per offer, in order: ``"accept"``, ``"reject"`` or ``"ring"`` (let it ring
            out); offers beyond the list are accepted.
        ring: Seconds an agent lets an offer ring before answering.
        talk: Seconds from the connection to the end of the call.
        hold_at: Seconds after the connection the agent puts the caller on hold, or None.
        hold_for: How long the hold lasts.
        patience: Seconds after arrival the caller hangs up if not connected yet, or None.
    """

    call_id: str
    arrive: float
    answers: tuple[str, ...] = ()
    ring: float = 2.0
    talk: float = 14.0
    hold_at: float | None = None
    hold_for: float = 4.0
    patience: float | None = None


@attrs.frozen
class FaultSpec:
    """A fault for one window of the run.

    Attributes:
        name: Its name in reports.
        start: When it starts (virtual seconds).
        duration: How long it lasts.
        fault: A FakeServiceNow fault, or None for the harness's own: ``"permanent"`` (writes
            in the window go to a table the instance lacks, so it answers 400) and
            ``"expire"`` (every access token is revoked every `every` seconds).
        kind: ``"fake"``, ``"permanent"`` or ``"expire"``.
        methods: HTTP methods it applies to (None: all).
        tables: Tables it applies to (None: all requests).
        probability: The chance it applies to a matching request.
        outage: Whether the instance is unusable for long enough to switch the modes.
        every: For ``"expire"``: seconds between revocations.
    """

    name: str
    start: float
    duration: float
    fault: Fault | None = None
    kind: Literal["fake", "permanent", "expire"] = "fake"
    methods: frozenset[str] | None = None
    tables: frozenset[str] | None = None
    probability: float = 1.0
    outage: bool = False
    every: float = 3.0

    @property
    def end(self) -> float:
        """When it stops."""
        return self.start + self.duration

    def window(self) -> FaultWindow:
        """The window as the checker sees it."""
        return FaultWindow(
            self.name,
            self.start,
            self.end,
            outage=self.outage,
            permanent=self.kind == "permanent",
            noise=self.probability < 1.0,
        )


@attrs.frozen
class Settings:
    """The engine's settings for a run (small, so that outages are seen within seconds)."""

    agents: int = 12
    offer_timeout: float = 10.0
    read_timeout: float = 4.0
    backoff_cap: float = 4.0
    breaker: BreakerConfig = attrs.field(
        factory=lambda: BreakerConfig(minimum_calls=3, window=6, open_wait=5.0, probes=1)
    )
    idle_poll: float = 1.0
    modes: ModeConfig = attrs.field(factory=lambda: ModeConfig(enter_after=10.0, leave_after=30.0))
    fold_updates: bool = True
    concurrency: int = 16
    #: Journal entries the drainer sends in one request (above 1, through the Batch API).
    per_request: int = 1
    #: Seconds every request spends on the network (a `Latency` on every request, for the
    #: whole run; not a fault). With few drainer slots it lets entries queue up, as they do
    #: when calls come fast, so that batches fill.
    round_trip: float = 0.0

    def config(self, seed: int, journal: Path | None) -> EngineConfig:
        """The engine's configuration."""
        return EngineConfig(
            "https://harness.service-now.com",
            auth=OAuth2ClientCredentials(CLIENT_ID, CLIENT_SECRET),
            journal=journal,
            router=RouterConfig(
                offer_timeout=self.offer_timeout,
                reject_delay=2.0,
                no_answer_delay=3.0,
                max_no_answer=None,
                seed=seed,
                default_queue=QueueConfig("default"),
            ),
            drainer=DrainerConfig(
                idle_poll=self.idle_poll,
                breaker=self.breaker,
                backoff=Backoff(cap=self.backoff_cap),
                concurrency=self.concurrency,
                per_request=self.per_request,
            ),
            records=RecordMapping(fold_updates=self.fold_updates),
            read_timeout=self.read_timeout,
            modes=self.modes,
            default_scope=SCOPES[0],
        )

    def expectations(self, agents: dict[str, str]) -> Expectations:
        """What this configuration promises (see `Expectations`).

        The breaker opens once ``ceil(failure_rate * window)`` requests in a row have failed
        (at least `minimum_calls`); each failure takes at most the read timeout, and between
        two attempts of an entry the drainer waits at most the backoff cap, then notices within
        an idle poll. The scopes switch at that instant (an open breaker is urgent). Back: a
        probe in flight when the fault ends may still time out, the breaker then waits
        `open_wait` before the next probe, and the scopes return after `leave_after` healthy.
        """
        b = self.breaker
        failures = max(b.minimum_calls, math.ceil(b.failure_rate * b.window))
        switch = failures * (self.read_timeout + self.backoff_cap) + self.idle_poll
        back = self.read_timeout + b.open_wait + self.idle_poll + self.modes.leave_after
        return Expectations(
            switch_within=switch,
            return_within=back,
            spurious_slack=self.read_timeout + self.backoff_cap + self.idle_poll,
            agents=agents,
            scopes=SCOPES,
            mapping=RecordMapping(fold_updates=self.fold_updates),
        )


@attrs.frozen
class Scenario:
    """One run: its seed, calls, faults, journal and settings."""

    seed: int
    calls: tuple[CallScript, ...]
    faults: tuple[FaultSpec, ...] = ()
    settings: Settings = attrs.field(factory=Settings)
    journal: Literal["memory", "sqlite"] = "memory"
    reproduce: str = ""
    #: Virtual seconds allowed after the last scripted moment for the journal to drain.
    drain_limit: float = 1800.0
    #: Virtual seconds to keep running once drained, so a late commit would still show.
    tail: float = 90.0


def batching(settings: Settings, per_request: int) -> Settings:
    """`settings` with the drainer sending up to `per_request` entries a request (Batch API).

    The drainer claims an entry as soon as it is journaled, so with 16 slots and an instance
    that answers at once every entry goes alone and no batch forms. Two slots and a 0.25 s
    round trip on every request let entries queue up behind the requests in flight, as they
    do when calls come fast or a backlog drains, so that batches go out in every phase (and
    entries still go alone: a create that may have been written, a lone due entry).
    """
    if per_request == 1:
        return settings
    return attrs.evolve(settings, per_request=per_request, concurrency=2, round_trip=0.25)


def user_sys_id(agent_id: str) -> str:
    """A stable `sys_user` sys_id for a harness agent."""
    return hashlib.sha256(agent_id.encode()).hexdigest()[:32]


def agent_ids(count: int) -> list[str]:
    """The agents' ids."""
    return [f"agent-{n + 1:02d}" for n in range(count)]


def random_calls(
    rng: random.Random,
    *,
    count: int,
    start: float,
    gap: float,
    prefix: str = "c",
    skip: Sequence[tuple[float, float]] = (),
) -> list[CallScript]:
    """`count` calls with seeded scripts, arriving about every `gap` seconds from `start`.

    Arrivals falling in a `skip` window are moved past it. Agents accept most offers, reject
    some and let some ring out; some calls are held; some callers give up while waiting.
    """
    calls = []
    at = start
    for n in range(count):
        at += rng.expovariate(1.0 / gap)
        for low, high in skip:
            if low <= at < high:
                at = high + rng.uniform(0.0, gap)
        first = rng.choices(("accept", "reject", "ring"), weights=(75, 12, 13))[0]
        second = rng.choices(("accept", "ring"), weights=(90, 10))[0]
        calls.append(
            CallScript(
                call_id=f"{prefix}{n:05d}",
                arrive=round(at, 3),
                answers=(first, second),
                ring=round(rng.uniform(0.5, 3.0), 3),
                talk=round(rng.uniform(5.0, 15.0), 3),
                hold_at=round(rng.uniform(1.0, 3.0), 3) if rng.random() < 0.35 else None,
                hold_for=round(rng.uniform(1.0, 4.0), 3),
                patience=round(rng.uniform(1.0, 20.0), 3) if rng.random() < 0.1 else None,
            )
        )
    return calls


# -- the recording wrappers ----------------------------------------------------------------------


class RecordingStore:
    """A `JournalStore` that writes down every transition of the store it wraps."""

    def __init__(self, inner: JournalStore, clock: ManualClock, history: RunHistory) -> None:
        self._inner = inner
        self._clock = clock
        self._history = history
        self.busy = 0  # calls under way (a SQLite store works on a thread meanwhile)
        self.open: dict[str, str] = {}  # key -> call_id of entries not done or dead

    def _note(self, op: str, entry: Entry, detail: str = "") -> None:
        self._history.journal.append(
            Transition(self._clock.now(), op, entry.call_id, entry.key, entry.state.value, detail)
        )
        if entry.state in (EntryState.DONE, EntryState.DEAD):
            self.open.pop(entry.key, None)
        else:
            self.open[entry.key] = entry.call_id

    async def _run(self, work: Awaitable[Any]) -> Any:
        self.busy += 1
        try:
            return await work
        finally:
            self.busy -= 1

    async def append(self, intents: Sequence[Intent], now: float) -> list[Entry]:
        entries: list[Entry] = await self._run(self._inner.append(intents, now))
        for entry in entries:
            folded = entry.state is EntryState.DONE and entry.result is not None
            self._note("fold" if folded else "append", entry)
        return entries

    async def claim(self, owner: str, now: float, limit: int, lease: float, **kw: Any) -> Any:
        entries: list[Entry] = await self._run(self._inner.claim(owner, now, limit, lease, **kw))
        for entry in entries:
            self._note("claim", entry)
        return entries

    async def complete(self, entry_id: int, owner: str, now: float, *args: Any, **kw: Any) -> Any:
        entry: Entry = await self._run(self._inner.complete(entry_id, owner, now, *args, **kw))
        self._note("complete", entry)
        return entry

    async def retry(self, entry_id: int, owner: str, now: float, *args: Any) -> Any:
        entry: Entry = await self._run(self._inner.retry(entry_id, owner, now, *args))
        self._note("retry", entry, entry.last_error or "")
        return entry

    async def kill(self, entry_id: int, owner: str, now: float, error: str) -> Any:
        entry: Entry = await self._run(self._inner.kill(entry_id, owner, now, error))
        self._note("kill", entry, error)
        return entry

    async def replay(self, entry_id: int, now: float) -> Any:
        entry: Entry = await self._run(self._inner.replay(entry_id, now))
        self._note("replay", entry)
        return entry

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kw: Any) -> Any:
            return await self._run(attribute(*args, **kw))

        return call


def _with(request: httpx.Request, url: httpx.URL, content: bytes) -> httpx.Request:
    """`request` sent to `url` with `content` (its length set afresh)."""
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
    return httpx.Request(
        request.method, url, headers=headers, content=content, extensions=request.extensions
    )


class RecordingTransport(httpx.AsyncBaseTransport):
    """The fake's transport, writing down each request; some writes become permanent errors.

    A Batch API request is written down, then each request it carries as a table request of
    its own (see `Sent`), which a permanent fault turns into an error alone.
    """

    def __init__(
        self, fake: FakeServiceNow, clock: ManualClock, history: RunHistory, mapping: RecordMapping
    ) -> None:
        self._inner = fake.transport()
        self._fake = fake
        self._clock = clock
        self._history = history
        self._mapping = mapping
        self.permanent: list[FaultSpec] = []

    def _poison(self, method: str, table: str | None, now: float) -> bool:
        return any(
            f.start <= now < f.end
            and method in (f.methods or {"POST", "PATCH", "PUT"})
            and (f.tables is None or table in f.tables)
            for f in self.permanent
        )

    def _row(self, table: str, sys_id: str) -> dict[str, str] | None:
        try:
            return self._fake.get(table, sys_id)
        except KeyError:
            return None

    def _call_of(
        self, table: str | None, fields: dict[str, Any], row: dict[str, str] | None
    ) -> str | None:
        m = self._mapping
        source = row if row is not None else fields
        if table == m.phone_log_table:
            value = source.get("call_id")
        elif table == m.interaction_table:
            value = source.get(m.interaction_correlation)
        elif table == m.work_item_table:
            value = source.get(m.work_item_correlation)
        else:
            value = None
        return str(value).split(":missed-", 1)[0] if value else None

    def _dangling(
        self, table: str | None, sys_id: str | None, fields: dict[str, Any]
    ) -> tuple[str, ...]:
        missing = []
        if table and sys_id and self._row(table, sys_id) is None:
            missing.append(f"{table}/{sys_id}")
        for field, target_field in (
            ("channel_metadata_document", "channel_metadata_table"),
            ("document_id", "document_table"),
        ):
            value, target = fields.get(field), fields.get(target_field)
            if (
                isinstance(value, str)
                and isinstance(target, str)
                and self._row(target, value) is None
            ):
                missing.append(f"{target}/{value}")
        return tuple(missing)

    def _sent(
        self,
        now: float,
        method: str,
        path: str,
        content: bytes,
        *,
        batch: str | None = None,
    ) -> tuple[Sent, str | None]:
        """A table request as the checker sees it, and the path to send it to instead, if any.

        The path changes when the request falls in a permanent fault's window: it then goes
        to a table the instance lacks.
        """
        match = _TABLE_PATH.match(path)
        table, sys_id = (match.group(1), match.group(2)) if match else (None, None)
        fields: dict[str, Any] = {}
        if method in ("POST", "PATCH", "PUT") and table and content:
            try:
                decoded = json.loads(content)
            except ValueError:
                decoded = {}
            fields = decoded if isinstance(decoded, dict) else {}
        row = self._row(table, sys_id) if table and sys_id else None
        call_id = self._call_of(table, fields, row)
        injected, moved = None, None
        if table and self._poison(method, table, now):
            injected = "permanent"
            moved = path.replace(f"/{table}", f"/u_retired_{table}", 1)
        dangling = self._dangling(table, sys_id, fields)
        kind: Literal["request", "sub"] = "request" if batch is None else "sub"
        sent = Sent(
            now, method, table, sys_id, call_id, fields, "pending", injected, dangling, batch, kind
        )
        return sent, moved

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        now = self._clock.now()
        method = request.method
        content = await request.aread()
        if method == "POST" and _BATCH_PATH.match(request.url.path):
            return await self._batch(request, content, now)
        sent, moved = self._sent(now, method, request.url.path, content)
        if moved is not None:
            request = _with(request, request.url.copy_with(path=moved), content)
        index = len(self._history.sent)
        self._history.sent.append(sent)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as error:
            self._history.sent[index] = attrs.evolve(sent, outcome=type(error).__name__)
            raise
        self._history.sent[index] = attrs.evolve(sent, outcome=str(response.status_code))
        return response

    async def _batch(self, request: httpx.Request, content: bytes, now: float) -> httpx.Response:
        """A Batch API request: written down as itself, then each sub-request as its own.

        Each sub-request is a `Sent` of its table (with the batch's id), poisoned as a request
        of its own would be, and its outcome is the status its item of the answer carries; when
        the batch failed as a whole, each takes the batch's outcome, as ``"batch <outcome>"``.
        """
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        items = body.get("rest_requests") if isinstance(body, dict) else None
        batch_id = str(body.get("batch_request_id", "")) if isinstance(body, dict) else ""
        outer = Sent(now, "POST", None, None, None, {}, "pending", batch=batch_id, kind="batch")
        subs: dict[str, int] = {}  # sub-request id -> its index in history.sent
        start = len(self._history.sent)
        self._history.sent.append(outer)
        if isinstance(items, list):
            changed = False
            rewritten = []
            for item in items:
                url = str(item.get("url", ""))
                path, mark, query = url.partition("?")
                try:
                    payload = base64.b64decode(item.get("body") or "")
                except ValueError:
                    payload = b""
                sent, moved = self._sent(
                    now, str(item.get("method", "")), path, payload, batch=batch_id
                )
                rewritten.append(item if moved is None else {**item, "url": moved + mark + query})
                changed = changed or moved is not None
                subs[str(item.get("id"))] = len(self._history.sent)
                self._history.sent.append(sent)
            if changed:
                content = json.dumps({**body, "rest_requests": rewritten}).encode()
                request = _with(request, request.url, content)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as error:
            self._settle_batch(start, subs, type(error).__name__, None)
            raise
        await response.aread()
        self._settle_batch(start, subs, str(response.status_code), response)
        return response

    def _settle_batch(
        self, start: int, subs: dict[str, int], outcome: str, response: httpx.Response | None
    ) -> None:
        """Write down the outcome of a batch (at `start`) and of its sub-requests."""
        sent = self._history.sent
        sent[start] = attrs.evolve(sent[start], outcome=outcome)
        items: dict[str, str] = {}
        unserviced: set[str] = set()
        answer = None
        if response is not None and response.is_success:
            try:
                answer = json.loads(response.content)
            except ValueError:
                answer = None
        if isinstance(answer, dict) and isinstance(answer.get("serviced_requests"), list):
            served = answer["serviced_requests"]
            items = {str(i.get("id")): str(i.get("status_code")) for i in served}
            unserviced = {str(i) for i in answer.get("unserviced_requests") or ()}
        else:
            answer = None
        for ident, index in subs.items():
            if answer is None:
                result = f"batch {outcome}"
            elif ident in items:
                result = items[ident]
            else:
                result = "unserviced" if ident in unserviced else "unanswered"
            sent[index] = attrs.evolve(sent[index], outcome=result)

    async def aclose(self) -> None:
        await self._inner.aclose()


class ScriptedChannel:
    """The agents: each offer is answered as its call's script says, on the clock."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def offer(self, agent: Agent, offer: Offer) -> None:
        self._run.offered(agent.agent_id, offer)

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        self._run.history.channel.append(
            ChannelCall(self._run.clock.now(), "withdraw", agent.agent_id, call_id)
        )

    async def notify(self, agent: Agent, notice: Notice) -> None:
        self._run.history.channel.append(
            ChannelCall(self._run.clock.now(), "notify", agent.agent_id)
        )

    async def transfer(
        self, agent: Agent, call_id: str, target: str, interaction_sys_id: str
    ) -> None:
        raise NotImplementedError("the harness never transfers")


# -- the run ------------------------------------------------------------------------------------


class Run:
    """One scenario's moving parts and its history."""

    def __init__(self, scenario: Scenario, journal_dir: Path | None = None) -> None:
        self.scenario = scenario
        s = scenario.settings
        self.clock = ManualClock()
        self.fake = FakeServiceNow(
            clock=self.clock, seed=scenario.seed, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        self.agents = {a: user_sys_id(a) for a in agent_ids(s.agents)}
        journal = None
        if scenario.journal == "sqlite":
            if journal_dir is None:
                raise ValueError("a SQLite run needs a folder for its journal")
            journal = journal_dir / f"journal-{scenario.seed}.db"
        self.config = s.config(scenario.seed, journal)
        self.history = RunHistory(
            seed=scenario.seed,
            reproduce=scenario.reproduce,
            expect=s.expectations(self.agents),
            faults=[f.window() for f in scenario.faults],
        )
        inner: JournalStore = (
            SqliteJournal(journal, batch_window=0) if journal is not None else MemoryJournal()
        )
        self.store = RecordingStore(inner, self.clock, self.history)
        self.transport = RecordingTransport(
            self.fake, self.clock, self.history, self.config.records
        )
        self.channel = ScriptedChannel(self)
        self.engine = Engine(
            self.config,
            self.channel,  # type: ignore[arg-type]
            clock=self.clock,
            transport=self.transport,
            store=self.store,  # type: ignore[arg-type]
        )
        # The drainer's jitter comes from an unseeded generator unless it is given one; the
        # engine does not pass one through, so the harness seeds it for repeatable runs.
        self.engine.drainer._rng = random.Random(f"drainer:{scenario.seed}")
        self.scripts = {c.call_id: c for c in scenario.calls}
        self.finished: set[str] = set()
        self._queue: list[tuple[float, int, Callable[[], Awaitable[None]]]] = []
        self._seq = itertools.count()

    # -- scheduling ---------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], Awaitable[None]]) -> None:
        """Do `action` at virtual time `when`."""
        heapq.heappush(self._queue, (when, next(self._seq), action))

    async def settle(self) -> None:
        """Let every task run until none is left to run at this instant."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's queue of callbacks to run
        spins = 0
        waited_since: float | None = None
        while spins < SPIN_LIMIT:
            await asyncio.sleep(0)
            if self.store.busy:
                # The journal's thread is working: wait for it in real time, without counting
                # turns (a slow disk is not a livelock), up to a bound that a stuck store fails.
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > STORE_WAIT_LIMIT:
                    raise AssertionError(
                        f"the journal store was busy for {STORE_WAIT_LIMIT:g} s of real time at "
                        f"virtual time {self.clock.now():g} s: {sorted(_busy_tasks())}"
                    )
                await asyncio.sleep(0.0005)
                continue
            waited_since = None
            spins += 1
            if ready is not None and not ready:
                return
            if ready is None and spins > 64:
                return
        # Something spins on a zero-second sleep at this instant (see `Livelock`): move the
        # clock on by a hair, as a real one would, and count it.
        self.history.spins.append((self.clock.now(), sorted(_busy_tasks())))
        if len(self.history.spins) > MAX_SPINS:
            raise Livelock(
                f"tasks kept running at virtual time {self.clock.now():g} s without it moving "
                f"on ({SPIN_LIMIT} turns of the event loop): {self.history.spins[-1][1]}"
            )
        self.clock.advance(NUDGE)

    def on_event(self, event: Any) -> None:
        self.history.events.append((self.clock.now(), event))
        if isinstance(event, _TERMINAL):
            self.finished.add(event.call_id)

    def step(self, action: str, call_id: str, agent_id: str | None = None, ok: bool = True) -> None:
        self.history.steps.append(
            Step(self.clock.now(), action, call_id, agent_id, ok, len(self.history.events))
        )

    # -- the people ---------------------------------------------------------------------------

    async def arrive(self, script: CallScript) -> None:
        now = self.clock.now()
        router = self.engine.router
        deadline = router.next_deadline()
        free = (
            router.waiting_count == 0
            and (deadline is None or deadline > now)
            and any(router.agent(a).eligible for a in self.agents)
        )
        self.history.calls[script.call_id] = CallPlan(script.call_id, now, free)
        caller = (
            f"+1415555{int(hashlib.sha256(script.call_id.encode()).hexdigest(), 16) % 10_000:04d}"
        )
        await self.engine.call_arrived(Call(script.call_id, caller, QUEUE, now))
        self.step("arrive", script.call_id)
        if script.patience is not None:
            self.at(now + script.patience, lambda: self.give_up(script.call_id))

    def offered(self, agent_id: str, offer: Offer) -> None:
        now = self.clock.now()
        call_id = offer.call.call_id
        self.history.channel.append(ChannelCall(now, "offer", agent_id, call_id, offer.attempt))
        script = self.scripts[call_id]
        answers = script.answers
        answer = answers[offer.attempt - 1] if offer.attempt <= len(answers) else "accept"
        if answer != "ring":
            self.at(now + script.ring, lambda: self.answer(call_id, agent_id, answer))

    def _state(self, call_id: str) -> CallState | None:
        if call_id in self.finished:
            return None
        try:
            return self.engine.router.call(call_id).state
        except CallResilienceError:
            return None

    async def _do(
        self, action: str, call_id: str, agent_id: str | None, work: Awaitable[None]
    ) -> bool:
        try:
            await work
        except CallResilienceError:
            self.step(action, call_id, agent_id, ok=False)
            return False
        self.step(action, call_id, agent_id)
        return True

    async def answer(self, call_id: str, agent_id: str, answer: str) -> None:
        if self._state(call_id) is not CallState.OFFERED:
            return
        if self.engine.router.call(call_id).agent_id != agent_id:
            return
        if answer == "reject":
            await self._do("reject", call_id, agent_id, self.engine.reject(call_id, agent_id))
            return
        if await self._do("accept", call_id, agent_id, self.engine.accept(call_id, agent_id)):
            script = self.scripts[call_id]
            now = self.clock.now()
            if script.hold_at is not None and script.hold_at < script.talk:
                self.at(now + script.hold_at, lambda: self.connected("hold", call_id))
                resume = min(script.hold_at + script.hold_for, script.talk)
                self.at(now + resume, lambda: self.connected("resume", call_id))
            self.at(now + script.talk, lambda: self.connected("end", call_id))

    async def connected(self, action: str, call_id: str) -> None:
        if self._state(call_id) is not CallState.CONNECTED:
            return
        work = {"hold": self.engine.hold, "resume": self.engine.resume, "end": self.engine.end}
        await self._do(action, call_id, None, work[action](call_id))

    async def give_up(self, call_id: str) -> None:
        if self._state(call_id) in (CallState.QUEUED, CallState.OFFERED):
            await self._do("hangup", call_id, None, self.engine.hangup(call_id))

    async def expire_tokens(self) -> None:
        self.fake.expire_tokens()

    # -- the loop -----------------------------------------------------------------------------

    def schedule(self) -> None:
        if self.scenario.settings.round_trip > 0:
            self.fake.faults.add(Latency(self.scenario.settings.round_trip))
        for script in self.scenario.calls:
            self.at(script.arrive, lambda script=script: self.arrive(script))
        for spec in self.scenario.faults:
            if spec.kind == "fake":
                assert spec.fault is not None
                self.fake.faults.add(
                    spec.fault,
                    start=spec.start,
                    duration=spec.duration,
                    probability=spec.probability,
                    methods=spec.methods,
                    tables=spec.tables,
                )
            elif spec.kind == "permanent":
                self.transport.permanent.append(spec)
            else:
                t = spec.start
                while t < spec.end:
                    self.at(t, self.expire_tokens)
                    t += spec.every

    def quiet(self) -> bool:
        """The calls are over, the journal has nothing left to run, every scope is normal."""
        if self._queue or len(self.finished) < len(self.scenario.calls):
            return False
        poisoned = {s.call_id for s in self.history.sent if s.injected and s.outcome == "400"}
        if any(call_id not in poisoned for call_id in self.store.open.values()):
            return False
        return all(self.engine.mode(scope) is Mode.NORMAL for scope in SCOPES)

    async def drive(self) -> None:
        last = max([c.arrive for c in self.scenario.calls] + [f.end for f in self.scenario.faults])
        limit = last + self.scenario.drain_limit
        stop: float | None = None
        next_look = 0.0
        while True:
            now = self.clock.now()
            due = self._queue and self._queue[0][0] <= now
            if due:
                _, _, action = heapq.heappop(self._queue)
                await action()
                await self.settle()
                continue
            if stop is None and now >= next_look and now >= last:
                next_look = now + 5.0
                if self.quiet():
                    stop = now + self.scenario.tail
            if stop is not None and now >= stop:
                return
            if now > limit:
                raise AssertionError(
                    f"the run did not settle {self.scenario.drain_limit:g} virtual seconds after "
                    f"its last scripted moment: {len(self.finished)}/{len(self.scenario.calls)} "
                    f"calls finished, {len(self.store.open)} journal entries open"
                )
            candidates = [t for t in (self.clock.next_wakeup(),) if t is not None]
            if self._queue:
                candidates.append(self._queue[0][0])
            if stop is not None:
                candidates.append(stop)
            if stop is None and now >= last:
                candidates.append(next_look)
            target = max(now, min(candidates)) if candidates else now + 1.0
            if target > now:
                self.clock.advance(target - now)
            else:
                self.clock.advance(0.0)
            await self.settle()

    async def run(self) -> RunHistory:
        self.engine.subscribe(self.on_event)
        async with self.engine:
            for n, agent_id in enumerate(self.agents):
                agent = Agent(
                    agent_id,
                    queues=[QUEUE],
                    user_sys_id=self.agents[agent_id],
                    scopes={SCOPES[n % len(SCOPES)]},
                )
                await self.engine.login(agent, ready=True)
            self.schedule()
            await self.drive()
            self.history.end = self.clock.now()
        m = self.config.records
        self.history.received = self.fake.requests
        self.history.tables = {
            t: self.fake.records(t)
            for t in (m.phone_log_table, m.interaction_table, m.work_item_table)
        }
        return self.history


async def run_scenario(scenario: Scenario, journal_dir: Path | None = None) -> RunHistory:
    """Run `scenario` to the end and return what it recorded."""
    return await Run(scenario, journal_dir).run()


def offer_timeline(history: RunHistory) -> list[tuple[float, str, str, int | None]]:
    """Every offer the agents got: when, which call, which agent, which attempt."""
    return [
        (c.at, c.call_id or "", c.agent_id, c.attempt)
        for c in history.channel
        if c.method == "offer"
    ]


def faults_met(history: RunHistory) -> int:
    """Requests the instance received while a fault (other than background noise) was on.

    Requests over the wire: a Batch API request counts once, not once per request it carries
    (its sub-requests are logged with its `batch_id`, and the batch itself after them).
    """
    windows = [f for f in history.faults if not f.noise]
    return sum(
        1
        for r in history.received
        if r.batch_id is None and any(f.start <= r.at < f.end for f in windows)
    )


def batches_sent(history: RunHistory) -> int:
    """Batch API requests the client sent."""
    return sum(1 for s in history.sent if s.kind == "batch")


def names(items: Iterable[Any]) -> list[str]:
    """Type names, for messages."""
    return [type(i).__name__ for i in items]


# -- the fault catalogue, the matrix and the combined run ----------------------------------------

_WRITES = frozenset({"POST", "PATCH"})


def fault_spec(name: str, start: float, duration: float) -> FaultSpec:
    """One of the catalogue's faults (see `FAULTS`) for a window."""
    kinds: dict[str, dict[str, Any]] = {
        "refused": {"fault": RefuseConnections(), "outage": True},
        "black_holed": {"fault": BlackHole(), "outage": True},
        "unavailable_503": {"fault": ServiceUnavailable(retry_after=5), "outage": True},
        "rate_limited_429": {"fault": RateLimit(1, per="second")},
        "slow": {"fault": Latency(2.0, distribution="exponential", spread=3.0)},
        "ambiguous_commit": {"fault": DropResponse(commit=True), "methods": _WRITES},
        "broken_200": {"fault": BrokenOk(), "outage": True},
        "hibernating": {"fault": Hibernating(), "outage": True},
        "token_expiry": {"kind": "expire"},
        "permanent_400": {"kind": "permanent"},
    }
    return FaultSpec(name, start, duration, **kinds[name])


#: The faults of the matrix, in the order of its table.
FAULTS = (
    "refused",
    "black_holed",
    "unavailable_503",
    "rate_limited_429",
    "slow",
    "ambiguous_commit",
    "broken_200",
    "hibernating",
    "token_expiry",
    "permanent_400",
)

#: The faults of the combined run: every one of the matrix.
COMBINED_FAULTS = FAULTS

#: The phases of a call, and when each comes for the matrix's cohort (seconds after arrival).
PHASES = {"arrival": 0.0, "offer": 0.5, "accept": 2.0, "hold": 6.0, "end": 16.0}

#: When the matrix's cohort arrives, how many calls it has, and how long a fault lasts.
COHORT_AT, COHORT, WINDOW = 60.0, 8, 30.0


def cohort(at: float = COHORT_AT) -> list[CallScript]:
    """Calls arriving together and going through the phases together.

    They ring 2 s, connect, go on hold 4 s later for 4 s and end 14 s after connecting; one
    rejects its first offer and one lets it ring out (an unassigned Interaction and a work
    item first), so every kind of record is written in the window.
    """
    calls = []
    for n in range(COHORT):
        answers = ("reject",) if n == COHORT - 2 else ("ring",) if n == COHORT - 1 else ()
        calls.append(
            CallScript(f"k{n:02d}", at, answers, ring=2.0, talk=14.0, hold_at=4.0, hold_for=4.0)
        )
    return calls


def matrix_scenario(
    seed: int, fault: str | None, phase: str, reproduce: str = "", *, per_request: int = 1
) -> Scenario:
    """Background calls, then the cohort; `fault` starts at the cohort's `phase` for 30 s.

    `per_request` is the drainer's: above 1, entries go through the Batch API (`batching`).
    """
    rng = random.Random(seed)
    background = random_calls(
        rng, count=40, start=0.0, gap=3.0, prefix="b", skip=[(COHORT_AT - 25.0, COHORT_AT + 1.0)]
    )
    faults = ()
    if fault is not None:
        faults = (fault_spec(fault, COHORT_AT + PHASES[phase], WINDOW),)
    return Scenario(
        seed=seed,
        calls=tuple(sorted([*background, *cohort()], key=lambda c: c.arrive)),
        faults=faults,
        settings=batching(Settings(), per_request),
        reproduce=reproduce,
    )


def combined_scenario(
    seed: int,
    calls: int,
    *,
    journal: Literal["memory", "sqlite"] = "memory",
    reproduce: str = "",
    per_request: int = 1,
    each_fault: bool = False,
) -> Scenario:
    """`calls` calls, one a second to 24 agents, through a seeded schedule of mixed faults.

    Every few minutes one of the catalogue's faults starts, for 10 to 60 s (a permanent error
    for 3 s); between two of them there is time for the modes to return. Over the whole run,
    a few percent of the writes meet an ambiguous commit or a slow answer at random.
    `per_request` is the drainer's: above 1, entries go through the Batch API (`batching`).
    With `each_fault`, the faults come in rounds, each the whole catalogue in a seeded order,
    with 1-2 minutes between them instead of 1-5, so that 2,000 calls meet every fault.
    """
    rng = random.Random(seed)
    scripts = random_calls(rng, count=calls, start=0.0, gap=1.0)
    end = scripts[-1].arrive if scripts else 0.0
    settings = batching(Settings(agents=24), per_request)
    faults: list[FaultSpec] = []
    at = 30.0
    rounds: list[str] = []
    while at < end:
        if each_fault:
            if not rounds:
                rounds = rng.sample(COMBINED_FAULTS, len(COMBINED_FAULTS))
            name = rounds.pop()
        else:
            name = rng.choice(COMBINED_FAULTS)
        duration = 3.0 if name == "permanent_400" else round(rng.uniform(10.0, 60.0), 1)
        faults.append(fault_spec(name, round(at, 1), duration))
        at += duration + 60.0 + rng.uniform(60.0, 120.0 if each_fault else 300.0)
    if end > 0:
        faults.append(
            FaultSpec(
                "random_ambiguous",
                0.0,
                end,
                DropResponse(commit=True),
                methods=_WRITES,
                probability=0.02,
            )
        )
        faults.append(
            FaultSpec(
                "random_slow",
                0.0,
                end,
                Latency(1.0, distribution="exponential", spread=2.0),
                probability=0.03,
            )
        )
    return Scenario(
        seed=seed,
        calls=tuple(scripts),
        faults=tuple(faults),
        settings=settings,
        journal=journal,
        reproduce=reproduce,
    )
