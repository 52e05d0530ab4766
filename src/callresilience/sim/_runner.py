"""Run a scenario: the fake over real HTTP, an engine with a SQLite journal, agents, callers.

Everything runs on one `ScaledClock`, shared by the engine, the agents and the fake (its fault
windows), so a run `speed` times faster than real time still talks HTTP over loopback for
real. The run ends in three phases: the arrivals stop and the calls finish; the faults are
cleared; the journal drains. Then the fake's tables are checked against the call history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import attrs

from .._errors import CallResilienceError
from .._model import Agent, Call
from ..engine import CallOffered, Engine, EngineConfig, RecordMapping
from ..health import ModeChanged, ModeConfig
from ..journal import DrainerConfig, EntryState, RecordDead
from ..resilience import Backoff, BreakerConfig, BreakerState, BreakerStateChanged
from ..routing import AgentNotReady, CallState, QueueConfig, RouterConfig
from ..servicenow import BasicAuth
from ..testing import AgentAction, FakeServiceNow, ScriptedAgents
from ._check import CheckResult, check
from ._clock import ScaledClock
from ._history import History
from ._scenario import Scenario, arrivals
from ._summary import BatchUse, batch_use, summarize
from ._timeline import Note, Sample

__all__ = ["Display", "RunResult", "run"]

QUEUE = "support"
SCOPES = ("region:emea", "region:amer")
_USER, _PASSWORD = "sim", "sim-password"  # the fake's own throwaway credentials


class Display(Protocol):
    """Where a run shows itself: the live dashboard, plain lines, or nothing."""

    def begin(self, lines: list[str]) -> None:
        """The run starts; `lines` describe the scenario."""
        ...

    def update(self, sample: Sample) -> None:
        """A new sample, once per tick."""
        ...

    def note(self, note: Note) -> None:
        """Something worth a line of its own happened."""
        ...

    def end(self) -> None:
        """The run is over (the summary comes after)."""
        ...


@attrs.frozen
class RunResult:
    """What a run produced.

    Attributes:
        scenario: What was run.
        summary: The numbers (`SUMMARY_KEYS`).
        check: The checker's findings.
        samples: One per tick.
        notes: The notable moments.
        wall_seconds: How long it took in real time.
        virtual_seconds: How long it took in run time.
        journal: The journal file (gone after the run unless `--journal` named it).
        batch: What went through the Batch API (all zero when `per_request` is 1).
    """

    scenario: Scenario
    summary: dict[str, Any]
    check: CheckResult
    samples: tuple[Sample, ...]
    notes: tuple[Note, ...]
    wall_seconds: float
    virtual_seconds: float
    journal: Path
    batch: BatchUse = attrs.field(factory=BatchUse)


def scenario_lines(scenario: Scenario) -> list[str]:
    """What the run will do, in a few lines."""
    from ._scenario import fault_lines  # noqa: PLC0415

    b = scenario.behaviour
    lines = [
        f"seed {scenario.seed}, speed x{scenario.speed:g}: calls arrive for "
        f"{scenario.duration:g} s at {scenario.rate:g}/s, {scenario.agents} agents in "
        f"{len(SCOPES)} scopes",
        f"agents accept {b.accept:.0%}, reject {b.reject:.0%}, let ring {b.no_answer:.0%}; "
        f"offers ring {scenario.offer_timeout:g} s",
        "faults: " + "; ".join(fault_lines(scenario.faults)),
        f"demo setting: a scope leaves resiliency mode after {scenario.leave_after:g} s "
        "healthy (the engine's default is 60 s)",
    ]
    if scenario.per_request > 1:
        lines.append(
            f"the drainer sends up to {scenario.per_request} journal entries per request "
            "through the Batch API"
        )
    return lines


def user_sys_id(agent_id: str) -> str:
    """A stable sys_id for a simulated agent."""
    return hashlib.sha256(agent_id.encode()).hexdigest()[:32]


class _Run:
    """One run's moving parts."""

    def __init__(self, scenario: Scenario, display: Display, journal: Path) -> None:
        self.scenario = scenario
        self.display = display
        self.journal = journal
        self.clock = ScaledClock(scenario.speed)
        self.fake = FakeServiceNow(
            clock=self.clock, seed=scenario.seed, user=_USER, password=_PASSWORD
        )
        self.history = History()
        self.samples: list[Sample] = []
        self.notes: list[Note] = []
        self.phase = "calls arriving"
        self.mapping = RecordMapping()
        self.tasks: set[asyncio.Task[None]] = set()
        self.busy = 0  # hang-ups in progress
        self._faults_seen: frozenset[str] = frozenset()
        self._breaker = "closed"
        self._modes: dict[str, str] = {}

    def t(self) -> float:
        return self.clock.now()

    def note(self, text: str) -> None:
        note = Note(round(self.t(), 1), text)
        self.notes.append(note)
        self.display.note(note)

    def schedule_faults(self) -> None:
        tables = {self.mapping.phone_log_table, self.mapping.interaction_table}
        tables.add(self.mapping.work_item_table)
        for spec in self.scenario.faults:
            if spec.kind == "ambiguous":
                self.fake.faults.add(
                    spec.fault(),
                    start=spec.start,
                    duration=spec.duration,
                    probability=spec.value,
                    methods={"POST"},
                    tables=tables,
                )
            else:
                self.fake.faults.add(spec.fault(), start=spec.start, duration=spec.duration)

    def config(self, base_url: str) -> EngineConfig:
        s = self.scenario
        return EngineConfig(
            base_url,
            auth=BasicAuth(_USER, _PASSWORD),
            journal=self.journal,
            router=RouterConfig(
                offer_timeout=s.offer_timeout,
                wrap_up_time=s.wrap_up_time,
                reject_delay=3.0,
                no_answer_delay=8.0,
                seed=s.seed,
                default_queue=QueueConfig("default", max_wait=s.max_wait),
            ),
            # Demo settings: a breaker that a few calls a second can open, and retries that
            # back off at most 10 s (the default cap, 60 s, can keep a backlog entry waiting
            # a minute after the instance is back).
            drainer=DrainerConfig(
                breaker=BreakerConfig(minimum_calls=3, window=10, open_wait=5.0, probes=1),
                backoff=Backoff(cap=10.0),
                # A claim feeds the batches: it must hold at least one full batch.
                batch=max(DrainerConfig().batch, s.per_request),
                per_request=s.per_request,
            ),
            modes=ModeConfig(leave_after=s.leave_after),
            default_scope=SCOPES[0],
        )

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        self.history.event(event)
        if isinstance(event, BreakerStateChanged):
            # Failed probes flip open -> half_open -> open every few seconds: show the edges.
            state = "closed" if event.new is BreakerState.CLOSED else "open"
            if state != self._breaker:
                self._breaker = state
                self.note(f"breaker {event.new.value}: {event.reason}")
        elif isinstance(event, ModeChanged):
            self.note(f"{event.scope}: {event.old.value} -> {event.new.value} ({event.reason})")
        elif isinstance(event, RecordDead):
            self.note(f"{event.call_id}: entry {event.key} dead: {event.reason}")
        elif isinstance(event, AgentNotReady):
            self.note(f"{event.agent_id} set not ready ({event.reason})")
        elif isinstance(event, CallOffered) and event.attempt > 3:
            self.note(f"{event.call_id} offered a {event.attempt}th time")

    def on_action(self, action: AgentAction) -> None:
        if action.kind == "offered" and action.call_id is not None:
            self.history.channel_called(action.call_id, action.at)

    # -- the callers -------------------------------------------------------------------------

    async def callers(self, engine: Engine) -> None:
        for arrival in arrivals(self.scenario):
            await self.clock.sleep(arrival.at - self.t())
            now = self.t()
            self.history.arrived(arrival.call_id, now, outage=self.scenario.unavailable_at(now))
            caller = f"+1415555{len(self.history.calls) % 10_000:04d}"
            await engine.call_arrived(Call(arrival.call_id, caller, QUEUE, now))
            if engine.router.call(arrival.call_id).state is CallState.QUEUED:
                self.history.calls[arrival.call_id].queued = True
            self.spawn(self.give_up(engine, arrival.call_id, arrival.patience))

    async def give_up(self, engine: Engine, call_id: str, patience: float) -> None:
        await self.clock.sleep(patience)
        self.busy += 1
        try:
            if engine.router.call(call_id).state in {CallState.QUEUED, CallState.OFFERED}:
                await engine.hangup(call_id)
        except CallResilienceError:
            pass  # over already
        finally:
            self.busy -= 1

    def settled(self, agents: ScriptedAgents) -> bool:
        """Every call is over and every engine call about one has returned.

        The engine publishes a call's end before its closing entries are durable (they are
        appended in a group commit), so the journal's counts can miss them until the engine
        call that ended the call has returned.
        """
        return self.history.active == 0 and self.busy == 0 and agents.busy == 0

    def spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- sampling ----------------------------------------------------------------------------

    async def sample(self, engine: Engine) -> Sample:
        status = await engine.status()
        counts = await engine.journal.counts()
        t = self.t()
        faults = tuple(f.kind for f in self.scenario.faults if f.active(t))
        if self.phase in {"draining", "done"}:
            faults = ()
        for kind in sorted(set(faults) - self._faults_seen):
            self.note(f"fault starts: {kind}")
        for kind in sorted(self._faults_seen - set(faults)):
            self.note(f"fault ends: {kind}")
        self._faults_seen = frozenset(faults)
        breakers = status["servicenow"]["breakers"]
        router = engine.router
        m = self.mapping
        h = self.history
        sample = Sample(
            t=round(t, 2),
            phase=self.phase,
            arrived=len(h.calls),
            waiting=router.waiting_count,
            ringing=sum(1 for c in router.snapshot().calls if c.state is CallState.OFFERED),
            connected=status["agents"].get("on_call", 0),
            offers=h.offers,
            redirects=h.redirects,
            rejected=sum(c.rejected for c in h.calls.values()),
            timed_out=sum(len(c.missed) for c in h.calls.values()),
            answered=h.answered,
            abandoned=h.count("abandoned"),
            overflowed=h.count("overflowed"),
            agents=dict(status["agents"]),
            faults=faults,
            breaker=str(breakers.get(status["servicenow"]["endpoint"], "closed")),
            modes={k: v for k, v in status["modes"].items() if k in SCOPES},
            depth=counts[EntryState.PENDING] + counts[EntryState.IN_FLIGHT],
            dead=counts[EntryState.DEAD],
            phone_logs=len(self.fake.records(m.phone_log_table)),
            interactions=len(self.fake.records(m.interaction_table)),
            work_items=len(self.fake.records(m.work_item_table)),
        )
        self.samples.append(sample)
        self.display.update(sample)
        return sample

    async def sampler(self, engine: Engine) -> None:
        while True:
            await self.sample(engine)
            await self.clock.sleep(self.scenario.tick)

    async def wait_until(
        self, engine: Engine, agents: ScriptedAgents, limit: float, *, drained: bool
    ) -> bool:
        """Wait (up to `limit` seconds) until the run has settled, and the journal drained.

        Settled is checked before the sample is taken, so that the journal counts it reads
        were taken after every engine call about the calls had returned.
        """
        deadline = self.t() + limit
        while self.t() < deadline:
            settled = self.settled(agents)
            sample = await self.sample(engine)
            if settled and (sample.depth == 0 or not drained):
                return True
            await self.clock.sleep(self.scenario.tick)
        return False

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> tuple[float | None, int]:
        """Run the scenario; return the drain time and the dead letters."""
        s = self.scenario
        self.schedule_faults()
        agents = ScriptedAgents(self.clock, s.behaviour, seed=s.seed, observer=self.on_action)
        async with self.fake.serve(port=0) as base_url:
            engine = Engine(self.config(base_url), agents, clock=self.clock)
            agents.bind(engine)
            engine.subscribe(self.on_event)
            async with engine:
                for n in range(s.agents):
                    agent_id = f"agent-{n + 1:02d}"
                    agent = Agent(
                        agent_id,
                        queues=[QUEUE],
                        user_sys_id=user_sys_id(agent_id),
                        scopes={SCOPES[n % len(SCOPES)]},
                    )
                    await engine.login(agent, ready=True)
                sampler = asyncio.create_task(self.sampler(engine))
                try:
                    await self.callers(engine)
                    self.phase = "winding down"
                    self.note("calls stop arriving; waiting for the calls in progress to end")
                    if not await self.wait_until(engine, agents, s.wind_down, drained=False):
                        self.note(f"{self.history.active} call(s) still active; giving up")
                    self.phase = "draining"
                    self.fake.faults.clear()
                    await self.fake.settle()
                    cleared = self.t()
                    self.note("faults cleared; waiting for the journal to drain")
                    drained = await self.wait_until(engine, agents, s.drain_timeout, drained=True)
                    if not drained:
                        self.note("the journal did not drain in time")
                    self.phase = "done"
                    last = await self.sample(engine)
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                    await agents.aclose()
                    for task in list(self.tasks):
                        task.cancel()
                    await asyncio.gather(*self.tasks, return_exceptions=True)
        recovery = s.last_fault_end(cleared)
        return self.drain_seconds(recovery, drained), last.dead

    def drain_seconds(self, recovery: float | None, drained: bool) -> float | None:
        """From the end of the last fault to the first empty journal after it."""
        if not drained:
            return None
        start = 0.0 if recovery is None else recovery
        for sample in self.samples:
            if sample.t >= start and sample.depth == 0:
                return max(0.0, sample.t - start)
        return None  # pragma: no cover (drained means a sample saw an empty journal)


@contextlib.contextmanager
def _journal_path(path: Path | None) -> Iterator[Path]:
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="callresilience-sim-") as folder:
        yield Path(folder) / "journal.db"


async def run(scenario: Scenario, display: Display) -> RunResult:
    """Run `scenario`, showing it on `display`, and check the outcome."""
    started = time.monotonic()
    # The engine logs every breaker and mode change as a warning; the display shows them.
    quiet = logging.getLogger("callresilience")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with _journal_path(scenario.journal) as journal:
            sim = _Run(scenario, display, journal)
            display.begin(scenario_lines(scenario))
            drain, dead = await sim.run()
            display.end()
    finally:
        quiet.setLevel(level)
    tables = {
        table: sim.fake.records(table)
        for table in (
            sim.mapping.phone_log_table,
            sim.mapping.interaction_table,
            sim.mapping.work_item_table,
        )
    }
    result = check(sim.history.calls.values(), tables, sim.mapping)
    summary = summarize(sim.history.calls.values(), result, dead_letters=dead, drain_seconds=drain)
    return RunResult(
        scenario=scenario,
        summary=summary,
        check=result,
        samples=tuple(sim.samples),
        notes=tuple(sim.notes),
        wall_seconds=time.monotonic() - started,
        virtual_seconds=sim.clock.now(),
        journal=journal,
        batch=batch_use(sim.fake.requests),
    )
