"""The engine end to end: offer latency whatever the instance does, and calls per second.

Two scenarios, side by side in one run:

- **offer latency**: the FakeServiceNow runs in its own process over loopback HTTP
  (127.0.0.1), once healthy and once black-holed (every request accepted, never answered; the
  client's read timeout is 5 s, 1 s in quick mode so that the breaker opens within the shorter
  run). The engine runs with its drainer, a SQLite journal in a
  temporary folder and the system clock. Calls arrive at a steady rate; enough agents are
  ready that one is always free. The channel's `offer` notes `time.perf_counter()`; offer
  latency is that minus the moment just before `call_arrived` was called. Each offer is
  accepted at once (accept latency: the time `engine.accept` takes to return, the journal
  commit included) and ended shortly after, so records flow to the instance (healthy) or
  pile up in the journal (black-holed). "Lost" counts calls not offered within 8 s.
- **lifecycle**: the fake in process behind its httpx transport, one event loop: calls
  arrive, are offered, accepted and ended, and the drainer creates their records (a phone log
  and an Interaction, then two updates; an update appended while its create is still pending
  is folded into it, so two to four requests per call, as counted by the fake). Measured once
  with the memory journal and once with SQLite: calls per second from the first arrival to
  the last record written, and the call path alone (first arrival to last end). Every record
  is then read back from the fake: one per call, in its final state. The figures are the
  medians of 3 runs per variant (the best run is kept beside them). Six variants: each journal
  with one request per entry and with the Batch API (50 per request), 50 calls at once; and
  each journal loaded, with 200 calls at once and 100 per request, the load the aims are
  judged at. Each run has a fresh interpreter of its own, pinned to one CPU where the OS
  allows it, so the journal's thread cannot borrow a second core and no run inherits what
  another left in the heap; the process CPU time per call is reported beside each figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import httpx

from callresilience import Agent, Call, OfferOutcome, RouterConfig
from callresilience.engine import Engine, EngineConfig, Notice, Offer
from callresilience.journal import (
    DrainerConfig,
    EntryState,
    JournalStore,
    MemoryJournal,
    RecordWritten,
    SqliteJournal,
)
from callresilience.metrics import TimedTransport
from callresilience.resilience import BreakerState, BreakerStateChanged
from callresilience.servicenow import BasicAuth
from callresilience.testing import FakeServiceNow

from ._common import table

RATE = 50.0  # calls per second in the latency scenario
HOLD = 0.1  # seconds a call stays connected before it ends
LOST_AFTER = 8.0  # seconds: a call not offered by then is lost
READ_TIMEOUT = 5.0
QUICK_READ_TIMEOUT = 1.0
TARGET_RATIO = 1.1
TARGET_CALLS = 2_000
TARGET_CALLS_MEMORY = 10_000
WRITES_PER_CALL = 4  # phone log and Interaction created, then both updated at the end
PER_REQUEST = 50  # entries per HTTP request in the Batch API variants
CONCURRENCY = 50  # calls in progress at once in the lifecycle variants
# The loaded variants: the load the lifecycle aim is judged at. A contact centre taking 2,000
# calls a second has thousands in progress; 200 is still few. With more calls in progress, a
# commit and a Batch API request each carry more of them.
LOADED_CONCURRENCY = 200
LOADED_PER_REQUEST = 100  # the instance runs a batch within its 30 s; unserviced ones go again


class _Channel:
    """An AgentChannel that notes when each offer arrives and hands it on."""

    def __init__(self, on_offer: Callable[[Agent, Offer, float], None]) -> None:
        self._on_offer = on_offer

    async def offer(self, agent: Agent, offer: Offer) -> None:
        self._on_offer(agent, offer, time.perf_counter())

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        pass

    async def notify(self, agent: Agent, notice: Notice) -> None:
        pass

    async def transfer(
        self, agent: Agent, call_id: str, target: str, interaction_sys_id: str
    ) -> None:
        pass


def _agents(count: int) -> list[Agent]:
    return [Agent(f"agent-{n}", queues=["support"], user_sys_id=f"{n:032x}") for n in range(count)]


def _ms(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of `values` (seconds), in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered) * 1e3, 3),
        "p99": round(p99 * 1e3, 3),
        "max": round(ordered[-1] * 1e3, 3),
    }


@contextlib.contextmanager
def one_cpu() -> Iterator[bool]:
    """Run the block on one CPU (this thread, and the threads it starts); say if it could.

    The lifecycle aim is "on one core": pinned, a journal thread cannot borrow a second core.
    """
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover (not Linux)
        yield False
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, allowed)


# -- offer latency over loopback HTTP ---------------------------------------------------------


async def _latency(
    black_hole: bool, calls: int, warm_up: int, read_timeout: float
) -> dict[str, Any]:
    """Offer and accept latencies of `calls` calls at `RATE`, after `warm_up` unmeasured ones."""
    args = ["--black-hole"] if black_hole else []
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks._fake_blackhole", *args, stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    url = (await server.stdout.readline()).decode().strip()
    arrived: dict[str, float] = {}
    offered: dict[str, float] = {}
    accepts: dict[str, float] = {}
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    opened: list[float] = []
    start = 0.0
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = EngineConfig(
                url,
                auth=BasicAuth("sn", "pw"),
                journal=Path(folder) / "journal.db",
                router=RouterConfig(wrap_up_time=0.0),
                read_timeout=read_timeout,
            )

            async def take(agent_id: str, call_id: str) -> None:
                try:
                    started = time.perf_counter()
                    await engine.accept(call_id, agent_id)
                    accepts[call_id] = time.perf_counter() - started
                    await asyncio.sleep(HOLD)
                    await engine.end(call_id)
                except Exception as error:  # counted and reported
                    failures.append(error)

            def on_offer(agent: Agent, offer: Offer, at: float) -> None:
                offered[offer.call.call_id] = at
                task = asyncio.ensure_future(take(agent.agent_id, offer.call.call_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            def on_event(event: object) -> None:
                if isinstance(event, BreakerStateChanged) and event.new is BreakerState.OPEN:
                    opened.append(time.perf_counter())

            engine = Engine(config, _Channel(on_offer))
            engine.subscribe(on_event)
            async with engine:
                for agent in _agents(max(20, int(RATE * HOLD * 4))):
                    await engine.login(agent, ready=True)
                gc.collect()
                start = time.perf_counter()
                for n in range(warm_up + calls):
                    delay = start + n / RATE - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    call_id = f"{'warm' if n < warm_up else 'call'}-{n:06d}"
                    call = Call(call_id, "+14155550100", "support", time.monotonic())
                    arrived[call_id] = time.perf_counter()
                    await engine.call_arrived(call)
                last = time.perf_counter()
                while len(offered) < len(arrived) and time.perf_counter() - last < LOST_AFTER:
                    await asyncio.sleep(0.01)
                if tasks:
                    await asyncio.wait(tasks, timeout=LOST_AFTER)
                counts = await engine.journal.counts()
                breaker = engine.drainer.breaker().state(time.monotonic()).value
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.stdout is not None
        report = json.loads((await server.stdout.readline()).decode() or "{}")
        await server.wait()
    measured = [c for c in arrived if c.startswith("call-")]
    latencies = [
        offered[c] - arrived[c]
        for c in measured
        if c in offered and offered[c] - arrived[c] <= LOST_AFTER
    ]
    return {
        "calls": calls,
        "offer_ms": _ms(latencies),
        "accept_ms": _ms([accepts[c] for c in measured if c in accepts]),
        "lost": len(measured) - len(latencies),
        "failures": len(failures),
        "journal_pending": counts[EntryState.PENDING] + counts[EntryState.IN_FLIGHT],
        "journal_done": counts[EntryState.DONE],
        "breaker": breaker,
        "breaker_opened_after_s": round(opened[0] - start, 1) if opened else None,
        "instance_records": sum(report.get("records", {}).values()),
        "instance_requests": report.get("outcomes", {}),
    }


# -- full lifecycle, in process ------------------------------------------------------------


async def lifecycle(
    store: JournalStore, calls: int, concurrency: int, per_request: int = 1
) -> dict[str, float]:
    """Run `calls` calls through the whole lifecycle; return calls/s with and without records.

    `concurrency` calls are in progress at once, each arriving, waiting for its offer, being
    accepted and ended; the drainer writes their records to the in-process fake meanwhile,
    `per_request` entries per HTTP request (more than 1: through the Batch API).
    """
    fake = FakeServiceNow(user="sn", password="pw", seed=13)
    waiting: dict[str, asyncio.Future[str]] = {}

    def on_offer(agent: Agent, offer: Offer, at: float) -> None:
        waiting.pop(offer.call.call_id).set_result(agent.agent_id)

    config = EngineConfig(
        "https://fake.service-now.com",
        auth=BasicAuth("sn", "pw"),
        journal=None,
        router=RouterConfig(wrap_up_time=0.0),
        # No pacing: the in-process fake has no rate limit, and the default learned bucket
        # stops at 2,000 requests/s (500 calls/s), which would be the figure measured.
        drainer=DrainerConfig(
            rate=1e9,
            learn_rate=False,
            idle_poll=0.05,
            per_request=per_request,
            batch=max(64, per_request),
        ),
    )
    in_fake = [0.0]  # seconds spent inside the fake's transport

    def observe(request: httpx.Request, code: str, seconds: float) -> None:
        in_fake[0] += seconds

    transport = TimedTransport(fake.transport(), observe, time.perf_counter)
    engine = Engine(config, _Channel(on_offer), transport=transport, store=store)
    writes = calls * WRITES_PER_CALL
    written = 0
    last_write = 0.0
    cpu = [0.0, 0.0]  # process CPU time (every thread) at the first arrival and the last write
    done = asyncio.Event()

    def count(event: object) -> None:
        # A folded update is reported when the create that carried it is written.
        nonlocal written, last_write
        if isinstance(event, RecordWritten):
            written += 1
            if written == writes:
                last_write = time.perf_counter()
                cpu[1] = time.process_time()
                done.set()

    engine.subscribe(count)
    loop = asyncio.get_running_loop()

    async def worker(first: int) -> None:
        for n in range(first, calls, concurrency):
            call_id = f"call-{n:06d}"
            offered = waiting[call_id] = loop.create_future()
            await engine.call_arrived(Call(call_id, "+14155550100", "support", time.monotonic()))
            agent_id = await offered
            await engine.accept(call_id, agent_id)
            await engine.end(call_id)

    async with engine:
        for agent in _agents(concurrency + 10):
            await engine.login(agent, ready=True)
        gc.collect()
        in_fake[0] = 0.0
        started = time.perf_counter()
        cpu[0] = time.process_time()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        ended = time.perf_counter()
        await asyncio.wait_for(done.wait(), timeout=120)
        counts = await engine.journal.counts()
    assert counts[EntryState.DONE] == writes, counts
    _check_final(fake, calls)
    # Sub-requests of a batch are logged by the fake too; only HTTP requests count here.
    http_requests = [r for r in fake.requests if r.batch_id is None]
    return {
        "calls_per_s": calls / (last_write - started),
        "call_path_per_s": calls / (ended - started),
        "requests_per_call": len(http_requests) / calls,
        # The fake answers inside the process: its time is part of the CPU time measured.
        "cpu_us_per_call": (cpu[1] - cpu[0]) / calls * 1e6,
        "fake_us_per_call": in_fake[0] / calls * 1e6,
    }


def _fresh_run(name: str, calls: int) -> dict[str, float]:
    """One run of the variant `name` in a new process (see `benchmarks._lifecycle_run`)."""
    done = subprocess.run(  # noqa: S603 (this interpreter, our own module)
        [sys.executable, "-m", "benchmarks._lifecycle_run", name, str(calls)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"lifecycle run {name} failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def _check_final(fake: FakeServiceNow, calls: int) -> None:
    """Every call has one phone log, ended, and one Interaction, closed and linked to it."""
    expected = {f"call-{n:06d}" for n in range(calls)}
    logs = {r["call_id"]: r for r in fake.records("sn_openframe_phone_log")}
    interactions = {r["correlation_id"]: r for r in fake.records("interaction")}
    assert len(fake.records("sn_openframe_phone_log")) == len(logs), "duplicate phone logs"
    assert len(fake.records("interaction")) == len(interactions), "duplicate Interactions"
    assert set(logs) == set(interactions) == expected, "records missing"
    for call_id, log in logs.items():
        assert log["end_time"], call_id
        assert log["duration"], call_id
        interaction = interactions[call_id]
        assert interaction["state"] == "closed_complete", call_id
        assert interaction["channel_metadata_document"] == log["sys_id"], call_id


async def _lifecycle_memory(calls: int, concurrency: int, per_request: int = 1) -> dict[str, float]:
    return await lifecycle(MemoryJournal(), calls, concurrency, per_request)


async def _lifecycle_sqlite(calls: int, concurrency: int, per_request: int = 1) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteJournal(Path(folder) / "journal.db")
        return await lifecycle(store, calls, concurrency, per_request)


@attrs.frozen
class _Variant:
    """One way of running the lifecycle: a journal, entries per request, calls at once."""

    scenario: Callable[[int, int, int], Coroutine[Any, Any, dict[str, float]]]
    per_request: int
    concurrency: int
    label: str


#: The lifecycle's variants, by the name their figures carry.
VARIANTS: Final = {
    "memory": _Variant(_lifecycle_memory, 1, CONCURRENCY, "memory"),
    "sqlite": _Variant(_lifecycle_sqlite, 1, CONCURRENCY, "SQLite"),
    "memory_batch": _Variant(
        _lifecycle_memory, PER_REQUEST, CONCURRENCY, f"memory, Batch API ({PER_REQUEST}/request)"
    ),
    "sqlite_batch": _Variant(
        _lifecycle_sqlite, PER_REQUEST, CONCURRENCY, f"SQLite, Batch API ({PER_REQUEST}/request)"
    ),
    "memory_loaded": _Variant(
        _lifecycle_memory,
        LOADED_PER_REQUEST,
        LOADED_CONCURRENCY,
        f"memory, Batch API ({LOADED_PER_REQUEST}/request), {LOADED_CONCURRENCY} calls at once",
    ),
    "sqlite_loaded": _Variant(
        _lifecycle_sqlite,
        LOADED_PER_REQUEST,
        LOADED_CONCURRENCY,
        f"SQLite, Batch API ({LOADED_PER_REQUEST}/request), {LOADED_CONCURRENCY} calls at once",
    ),
}


# -- the suite ---------------------------------------------------------------------------------


def run(*, quick: bool) -> dict[str, Any]:
    """Run the engine suite and print its table."""
    # The black-holed condition must run long enough for the client's timeouts (one for the
    # POST, one more for the lookup after it) to reach the breaker: with 5 s timeouts that is
    # about 10 s, so quick mode uses 1 s timeouts (the breaker opens after about 2 s) and 5 s
    # of arrivals per condition instead of 30 s. What is measured stays the same: offers while
    # the records cannot be written.
    if quick:
        calls, warm_up, cycle_calls, read_timeout = 250, 20, 1_000, QUICK_READ_TIMEOUT
    else:
        calls, warm_up, cycle_calls, read_timeout = 1_500, 50, 5_000, READ_TIMEOUT
    runs = 3
    healthy = asyncio.run(_latency(False, calls, warm_up, read_timeout))
    blackholed = asyncio.run(_latency(True, calls, warm_up, read_timeout))
    # Each run in a fresh interpreter; the runs alternate between the variants, so that a busy
    # spell slows all alike.
    runs_of: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    pinned = True
    for _ in range(runs):
        for name in VARIANTS:
            figures = _fresh_run(name, cycle_calls)
            pinned = pinned and bool(figures.pop("one_cpu"))
            runs_of[name].append(figures)

    def median(results: list[dict[str, float]], key: str) -> int:
        return round(statistics.median(r[key] for r in results))

    def best(results: list[dict[str, float]], key: str) -> int:
        return round(max(r[key] for r in results))

    def per_call(results: list[dict[str, float]]) -> float:
        return round(statistics.median(r["requests_per_call"] for r in results), 2)

    cycle: dict[str, Any] = {
        "calls": cycle_calls,
        "runs": runs,
        "statistic": "median",
        "one_cpu": pinned,
        "concurrent_calls": CONCURRENCY,
        "per_request_batch": PER_REQUEST,
        "loaded_concurrent_calls": LOADED_CONCURRENCY,
        "loaded_per_request": LOADED_PER_REQUEST,
    }
    for name, results_of in runs_of.items():
        cycle[f"calls_per_s_{name}"] = median(results_of, "calls_per_s")
        cycle[f"calls_per_s_{name}_runs"] = [round(r["calls_per_s"]) for r in results_of]
        cycle[f"calls_per_s_{name}_best"] = best(results_of, "calls_per_s")
        cycle[f"call_path_per_s_{name}"] = median(results_of, "call_path_per_s")
        cycle[f"requests_per_call_{name}"] = per_call(results_of)
        cycle[f"cpu_us_per_call_{name}"] = median(results_of, "cpu_us_per_call")
        cycle[f"fake_us_per_call_{name}"] = median(results_of, "fake_us_per_call")

    ratio = round(blackholed["offer_ms"]["p99"] / healthy["offer_ms"]["p99"], 2)
    results: dict[str, Any] = {
        "calls_per_condition": calls,
        "arrival_rate_per_s": RATE,
        "read_timeout_s": read_timeout,
        "offer_latency_ms": {"healthy": healthy["offer_ms"], "blackholed": blackholed["offer_ms"]},
        "ratio_p99_blackholed_vs_healthy": ratio,
        "lost": healthy["lost"] + blackholed["lost"],
        "accept_latency_ms": {
            "healthy": healthy["accept_ms"],
            "blackholed": blackholed["accept_ms"],
        },
        "conditions": {"healthy": healthy, "blackholed": blackholed},
        "lifecycle": cycle,
    }

    def trio(figures: dict[str, float]) -> str:
        return f"{figures['p50']:.2f}/{figures['p99']:.2f}/{figures['max']:.2f}"

    rows = [
        ("offer ms p50/p99/max, healthy", trio(healthy["offer_ms"]), ""),
        ("offer ms p50/p99/max, black-holed", trio(blackholed["offer_ms"]), ""),
        ("ratio p99 black-holed/healthy", f"{ratio}", f"aim <= {TARGET_RATIO}"),
        ("lost (not offered in 8 s)", f"{results['lost']}", "must be 0"),
        ("accept ms p50/p99/max, healthy", trio(healthy["accept_ms"]), ""),
        ("accept ms p50/p99/max, black-holed", trio(blackholed["accept_ms"]), ""),
        (
            "records on instance, healthy",
            f"{healthy['instance_records']:,}",
            f"{2 * (calls + warm_up):,} expected",
        ),
        (
            "journal backlog, black-holed",
            f"{blackholed['journal_pending']:,}",
            f"breaker {blackholed['breaker']}, opened after "
            f"{blackholed['breaker_opened_after_s']} s",
        ),
    ]
    for name, variant in VARIANTS.items():
        aim = TARGET_CALLS_MEMORY if name.startswith("memory") else TARGET_CALLS
        rows.append(
            (
                f"lifecycle calls/s, {variant.label}",
                f"{cycle[f'calls_per_s_{name}']:,}/s",
                f"aim >= {aim:,}/s; {cycle[f'requests_per_call_{name}']} HTTP requests per "
                f"call; call path alone {cycle[f'call_path_per_s_{name}']:,}/s; CPU "
                f"{cycle[f'cpu_us_per_call_{name}']} us per call, of which the fake "
                f"{cycle[f'fake_us_per_call_{name}']} us",
            )
        )
    table(
        f"engine: {calls:,} calls at {RATE:g}/s per condition over loopback, read timeout "
        f"{read_timeout:g} s; lifecycle {cycle_calls:,} calls in process"
        f"{', on one CPU' if pinned else ''}, median of {runs}",
        rows,
    )
    return results
