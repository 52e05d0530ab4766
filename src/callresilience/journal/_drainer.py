"""The drainer: runs journal entries against the instance, in the background, exactly once.

Exactly-once *effect* comes from at-least-once execution plus idempotent operations: a create
goes through `ServiceNowClient.create_once`, which looks the record up by its correlation field
before posting again after an ambiguous failure. The drainer adds what a single call cannot:

- **Leases.** Entries are claimed with a lease; a crashed worker's entries run again once
  their lease has run out, and a worker whose lease was lost drops its result.
- **Settling.** After a failure that may still be running on the instance (a timeout, a reset,
  a 502/504), a lookup that finds nothing proves nothing until the instance's transaction limit
  (60 s for the Table API) has passed since the failure. Until then the entry is only looked
  up, never posted again.
- **Backoff.** A few quick retries in process (on tenacity), then the entry goes back to the
  journal with a durable next-attempt time: exponential with full jitter, or `Retry-After`.
- **A breaker per endpoint.** While it is open nothing is claimed; half-open sends cheap probe
  reads, never journal entries.
- **Pacing.** Every request waits on a token bucket, learned from 429s, so a backlog drains
  at the rate the instance allows instead of in a stampede.
- **Dead entries** only for refusals of the entry itself (a 400, a 403 on its table, a
  missing table). A 401 after the client's one re-authentication concerns every entry: it
  counts as a failure for the breaker, and the entry waits in the journal like after a 503.

Entries are operations on tables, described by their payload (see `create_intent` and
`update_intent`). A value ``{"$ref": "name"}`` in a payload stands for the sys_id that an
earlier entry of the same call stored under ``name``. An update the store folded into its
create (see `_fold`) is written by the create's POST and reported with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import Any, Final, TypeAlias

import attrs

from .._clock import Clock, SystemClock, sleep_or_wake
from .._errors import (
    AmbiguousError,
    AuthenticationError,
    InvalidInput,
    PermanentError,
    RateLimited,
    ServiceNowError,
    TransientError,
)
from .._validators import at_least_one, seconds_at_least_zero
from ..resilience import (
    Backoff,
    BreakerConfig,
    BreakerState,
    BreakerStateChanged,
    CircuitBreaker,
    TokenBucket,
    retrying,
)
from ..servicenow import BatchRequest, Query, Record, ServiceNowClient, ref_value
from ..servicenow._classify import may_still_run
from ._errors import LeaseLost
from ._fold import CREATE, FOLDED, UPDATE
from ._store import JournalStore
from ._types import Entry, Intent, check_groups

__all__ = [
    "Drainer",
    "DrainerConfig",
    "DrainerEvent",
    "RecordDead",
    "RecordWritten",
    "create_intent",
    "update_intent",
]

log = logging.getLogger("callresilience.journal")

# How `last_error` tells the next attempt that an earlier one may have written: "ambiguous"
# (the instance answered, so a lookup is authoritative), "ambiguous since <time>" (the request
# may still be running until the settle time has passed), or the store's note that a lease ran
# out with no outcome recorded.
_AMBIGUOUS: Final = "ambiguous"
_AMBIGUOUS_MARK: Final = "ambiguous since "
_TAKEOVER: Final = "lease of "
#: How many calls' results the drainer keeps at most.
_KNOWN_CALLS: Final = 4096
#: How many entries backed off for the instance's trouble the drainer remembers at most.
_BACKED_OFF: Final = 10_000
#: All the drainer reads of a record it wrote: the instance need not render the rest.
_ANSWER_FIELDS: Final = ("sys_id",)


def create_intent(
    call_id: str,
    name: str,
    table: str,
    fields: Mapping[str, Any],
    *,
    correlation: tuple[str, str],
    group: str = "",
) -> Intent:
    """Return the intent to create one record, stored under `name` for later entries.

    Args:
        call_id: The call the record belongs to.
        name: What the record is to the call (``"phone_log"``, ``"interaction"``); its
            sys_id is stored under this name and the idempotency key is ``call_id:name``.
        table: The table to create it in.
        fields: Its fields; ``{"$ref": "other"}`` stands for another record's sys_id.
        correlation: The field and value that identify the record on the instance, so that
            a create whose outcome was unknown is found instead of repeated.
        group: The entry's group (see `Intent.group`).
    """
    payload = {
        "table": table,
        "fields": dict(fields),
        "correlation": list(correlation),
        "name": name,
    }
    return Intent(
        call_id=call_id, kind=CREATE, payload=payload, key=f"{call_id}:{name}", group=group
    )


def update_intent(
    call_id: str,
    key: str,
    table: str,
    target: str,
    fields: Mapping[str, Any],
    *,
    group: str = "",
    fold: bool = True,
) -> Intent:
    """Return the intent to update the record stored under `target` for this call.

    Args:
        call_id: The call.
        key: A name for this update, unique within the call (``"end"``, ``"hold-3"``).
        table: The record's table.
        target: The name the record's sys_id is stored under (``"interaction"``).
        fields: The fields to set.
        group: The entry's group (see `Intent.group`).
        fold: Whether the store may fold it into its record's create when that has not run
            yet (one POST with the final state instead of a POST and a PATCH); False when
            the instance must see the update as an update (business rules on update).
    """
    payload: dict[str, Any] = {"table": table, "target": target, "fields": dict(fields)}
    if not fold:
        payload["fold"] = False
    return Intent(
        call_id=call_id, kind=UPDATE, payload=payload, key=f"{call_id}:{key}", group=group
    )


@attrs.frozen
class RecordWritten:
    """An entry's record was created (or adopted) or updated on the instance.

    Attributes:
        call_id: The call.
        key: The entry's idempotency key.
        name: What the record is to the call (``"interaction"``, ``"phone_log"``).
        kind: ``"create"`` or ``"update"``.
        table: The record's table.
        sys_id: The record's sys_id.
        adopted: A create found the record already there (written by an earlier attempt
            whose answer was lost) instead of creating it.
    """

    call_id: str
    key: str
    name: str
    kind: str
    table: str
    sys_id: str
    adopted: bool


@attrs.frozen
class RecordDead:
    """The instance refused an entry for good; an operator may replay it."""

    call_id: str
    key: str
    reason: str


DrainerEvent: TypeAlias = RecordWritten | RecordDead | BreakerStateChanged


@attrs.frozen
class DrainerConfig:
    """How the drainer works the journal.

    Attributes:
        concurrency: Entries in flight at once.
        batch: Entries claimed per claim.
        lease: Seconds a claimed entry is ours before another worker may take it over.
        idle_poll: Seconds between looks at the journal when nothing is due and nobody
            called `wake()`.
        attempts: Attempts in process (the first included) before an entry goes back to
            the journal with a durable next-attempt time.
        backoff: The waits between attempts.
        settle: Seconds after an ambiguous failure before a lookup that finds nothing is
            trusted and the record posted again (the Table API cancels a transaction after
            60 s).
        breaker: The circuit breaker's thresholds.
        rate: Requests per second to start at (learned from then on unless `learn_rate` is
            False).
        learn_rate: Learn the instance's rate from 429s and throughput.
        hold_over: A `Retry-After` longer than this holds every request, not just the entry.
        per_request: Entries sent in one HTTP request. 1 sends each entry as a Table API
            request of its own; more sends up to this many together through ServiceNow's
            Batch API (`ServiceNowClient.batch`), which saves a round trip per entry when a
            backlog drains or calls come fast. Batched entries get no quick retries in
            process, and a create that may have been written earlier is always sent alone
            (it is looked up first). Should the instance refuse the Batch API itself, the
            drainer logs it and sends entries one by one from then on.
    """

    concurrency: int = attrs.field(default=16, validator=at_least_one)
    batch: int = attrs.field(default=64, validator=at_least_one)
    lease: float = attrs.field(default=120.0, validator=seconds_at_least_zero)
    idle_poll: float = attrs.field(default=1.0, validator=seconds_at_least_zero)
    attempts: int = attrs.field(default=2, validator=at_least_one)
    backoff: Backoff = attrs.field(factory=Backoff)
    settle: float = attrs.field(default=65.0, validator=seconds_at_least_zero)
    breaker: BreakerConfig = attrs.field(factory=BreakerConfig)
    rate: float = 50.0
    learn_rate: bool = True
    hold_over: float = attrs.field(default=5.0, validator=seconds_at_least_zero)
    per_request: int = attrs.field(default=1, validator=at_least_one)

    def __attrs_post_init__(self) -> None:
        if self.lease < self.settle + 10:
            raise InvalidInput(
                f"lease: {self.lease} s is too short; it must exceed settle ({self.settle} s) by "
                "at least 10 s, so that a dead worker's last request is over when its lease ends",
                field="lease",
            )


class _Settling(Exception):
    """A lookup found nothing before the settle time: try again later, post nothing."""

    def __init__(self, until: float) -> None:
        super().__init__(until)
        self.until = until


class Drainer:
    """Runs a journal's entries against an instance until stopped.

    Use it as an async context manager; it drains in background tasks while open::

        async with Drainer(store, client) as drainer:
            await store.append([...], clock.time())
            drainer.wake()

    Args:
        store: The journal.
        client: The instance.
        config: How to work.
        clock: Where time comes from (monotonic for pacing, UNIX for the journal).
        on_event: Called with each `DrainerEvent`; exceptions it raises are logged.
        rng: The random source for jitter (seed it for repeatable runs).
        owner: This worker's id in leases (default: a random one).
    """

    def __init__(
        self,
        store: JournalStore,
        client: ServiceNowClient,
        config: DrainerConfig | None = None,
        *,
        clock: Clock | None = None,
        on_event: Callable[[DrainerEvent], object] | None = None,
        rng: random.Random | None = None,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._config = config or DrainerConfig()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._owner = owner or f"drainer-{uuid.uuid4().hex[:12]}"
        self._breakers: dict[str, CircuitBreaker] = {}
        # Results of the calls whose entries this drainer ran lately, oldest first: the next
        # entry of a call usually needs only what the previous one stored.
        self._known: dict[str, dict[str, str]] = {}
        self._bucket = TokenBucket(rate=self._config.rate, learn=self._config.learn_rate)
        self._slots = asyncio.Semaphore(self._config.concurrency)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._held: frozenset[str] = frozenset()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        # A create may be posted only this long after the claim, so that the transaction of
        # a post by a worker that then died is over before its lease runs out.
        self._post_window = self._config.lease - self._config.settle
        # Cleared for good when the instance refuses the Batch API itself.
        self._batching = self._config.per_request > 1
        # Entries put back with a backoff because the instance was in trouble, oldest first:
        # once the breaker closes again they are due at once (`_recovered`).
        self._backed_off: dict[int, None] = {}
        self._recovered = False

    def __repr__(self) -> str:
        return f"<Drainer owner={self._owner!r} in_flight={len(self._running)}>"

    @property
    def owner(self) -> str:
        """This worker's id in leases."""
        return self._owner

    @property
    def bucket(self) -> TokenBucket:
        """The pacing bucket (its `rate` is the current learned rate)."""
        return self._bucket

    def breaker(self, endpoint: str | None = None) -> CircuitBreaker:
        """Return the breaker of an endpoint (default: the client's current one)."""
        endpoint = endpoint or self._client.endpoint
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = self._breakers[endpoint] = CircuitBreaker(endpoint, self._config.breaker)
        return breaker

    @property
    def held(self) -> frozenset[str]:
        """The entry groups the drainer leaves in the journal for now."""
        return self._held

    def hold(self, groups: Collection[str]) -> None:
        """Leave entries of `groups` in the journal until a later `hold` no longer names them.

        Entries already in flight finish; later entries of the same calls wait behind held
        ones, as always. ``hold(())`` releases every group.
        """
        held = check_groups(groups)
        released = self._held - held
        self._held = held
        if released:
            self.wake()

    def wake(self) -> None:
        """Look at the journal now (call after appending)."""
        self._wake.set()

    async def __aenter__(self) -> Drainer:
        self._loop_task = asyncio.create_task(self._loop(), name=f"{self._owner}-loop")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop claiming, and cancel the entries in flight (their leases will run out)."""
        self._closing = True
        tasks = [t for t in (self._loop_task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain_once(self) -> int:
        """Claim and run one batch of due entries to completion; return how many ran.

        For tests and tools: the background loop does the same continuously.
        """
        if self._recovered:
            await self._expedite()
        entries = await self._claim()
        await asyncio.gather(*(work() for work in self._works(entries)))
        return len(entries)

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._closing:
            try:
                claimed = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the drainer's loop failed; trying again")
                claimed = 0
            if claimed == 0:
                await self._idle()

    async def _step(self) -> int:
        """One turn: probe while the breaker is not closed, else claim and start entries."""
        breaker = self.breaker()
        now = self._clock.now()
        state = breaker.state(now)
        if state is BreakerState.OPEN:
            return 0
        if state is BreakerState.HALF_OPEN:
            await self._probe(breaker)
            return 0
        if self._recovered:
            await self._expedite()
        free = self._config.concurrency - len(self._running)
        if free <= 0:
            return 0
        entries = await self._claim(min(free * self._per_request, self._config.batch))
        for work in self._works(entries):
            await self._start(work)
        return len(entries)

    @property
    def _per_request(self) -> int:
        return self._config.per_request if self._batching else 1

    def _works(self, entries: list[Entry]) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The pieces of work that run claimed entries: batches of them, or one each."""
        per = self._per_request
        if per == 1:
            return [functools.partial(self._run, entry) for entry in entries]
        # A create that may have been written is looked up first: it goes alone.
        alone = [e for e in entries if _may_have_written(e)]
        together = [e for e in entries if not _may_have_written(e)]
        works: list[Callable[[], Coroutine[Any, Any, None]]] = []
        for n in range(0, len(together), per):
            chunk = together[n : n + per]
            if len(chunk) == 1:
                alone.extend(chunk)
            else:
                works.append(functools.partial(self._run_batch, chunk))
        works.extend(functools.partial(self._run, entry) for entry in alone)
        return works

    async def _start(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `work` in a slot of its own, in the background."""
        await self._slots.acquire()
        task = asyncio.create_task(self._in_slot(work))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _idle(self) -> None:
        """Wait for a wake-up, the poll interval, or the breaker's next probe time."""
        wait = self._config.idle_poll
        open_until = self.breaker().open_until
        if open_until is not None:
            wait = min(wait, max(0.0, open_until - self._clock.now()))
        self._wake.clear()
        await sleep_or_wake(self._clock, wait, self._wake)

    async def _expedite(self) -> None:
        """After a recovery: run now the entries that backed off for the instance's trouble.

        Their backoff (up to a minute) was for an instance that is back; entries that wait
        out a `Retry-After`, or an ambiguous update that waits out the settle time, are not
        among them and keep their time.
        """
        self._recovered = False
        ids, self._backed_off = list(self._backed_off), {}
        if ids:
            moved = await self._store.reschedule(ids, self._clock.time())
            if moved:
                log.info("the instance is back: %d entries that backed off run now", moved)

    def _backed_off_for_trouble(self, entry: Entry, error: ServiceNowError) -> None:
        """Remember an entry put back because the instance was in trouble (see `_expedite`)."""
        if isinstance(error, RateLimited | PermanentError):
            return
        if isinstance(error, AmbiguousError) and entry.kind != CREATE and may_still_run(error):
            return  # it waits out the settle time: the earlier attempt may still commit
        self._backed_off[entry.entry_id] = None
        if len(self._backed_off) > _BACKED_OFF:
            del self._backed_off[next(iter(self._backed_off))]

    async def _claim(self, limit: int | None = None) -> list[Entry]:
        cfg = self._config
        return await self._store.claim(
            self._owner, self._clock.time(), limit or cfg.batch, cfg.lease, skip_groups=self._held
        )

    async def _in_slot(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await work()
        finally:
            self._slots.release()
            self._wake.set()

    async def _probe(self, breaker: CircuitBreaker) -> None:
        allowed, events = breaker.allow_probe(self._clock.now())
        self._emit_all(events)
        if not allowed:
            return
        try:
            await self._client.probe()
        except (TransientError, AmbiguousError) as error:
            self._emit_all(
                breaker.record_failure(self._clock.now(), probe=True, reason=type(error).__name__)
            )
        except ServiceNowError:
            # The instance answered (with a refusal): it is up.
            self._emit_all(breaker.record_success(self._clock.now(), probe=True))
        else:
            self._emit_all(breaker.record_success(self._clock.now(), probe=True))

    # -- one entry ---------------------------------------------------------------------------

    async def _run(self, entry: Entry) -> None:
        """Run one claimed entry and record its outcome in the journal."""
        try:
            outcome: RecordWritten | Exception = await self._execute(entry)
        except (_Settling, InvalidInput, ServiceNowError) as error:
            outcome = error
        await self._finish(entry, outcome)

    async def _run_batch(self, entries: list[Entry]) -> None:
        """Send claimed entries in one Batch API request; record each one's outcome."""
        outcomes: dict[int, RecordWritten | Exception] = {}
        ready: list[tuple[Entry, BatchRequest]] = []
        for entry in entries:
            try:
                ready.append((entry, await self._batch_request(entry)))
            except (_Settling, InvalidInput) as error:
                outcomes[entry.entry_id] = error
        if ready:
            outcomes.update(await self._send_batch(ready))
        await asyncio.gather(
            *(self._finish(e, outcomes[e.entry_id]) for e in entries if e.entry_id in outcomes)
        )

    async def _send_batch(
        self, ready: list[tuple[Entry, BatchRequest]]
    ) -> dict[int, RecordWritten | Exception]:
        """Send one batch; return each entry's outcome (none for entries it finished itself)."""
        await self._pace(len(ready))
        try:
            answers = await self._call(
                self._client.batch([request for _, request in ready], fields=_ANSWER_FIELDS)
            )
        except PermanentError as error:
            # The batch itself was refused (no Batch API for this user?), not the entries:
            # nothing ran, so each goes alone now, and from now on.
            log.error(
                "the instance refused a Batch API request (%s); sending entries one by one "
                "from now on",
                error,
            )
            self._batching = False
            await asyncio.gather(*(self._run(entry) for entry, _ in ready))
            return {}
        except ServiceNowError as error:
            # Told to the breaker once, for the one request that failed.
            return {entry.entry_id: error for entry, _ in ready}
        return {
            entry.entry_id: self._answered(entry, request, answer)
            for (entry, request), answer in zip(ready, answers, strict=True)
        }

    async def _batch_request(self, entry: Entry) -> BatchRequest:
        """The request that writes `entry` in a batch."""
        table, results, fields = await self._prepared(entry)
        if entry.kind == CREATE:
            self._check_post_window(entry)
            return BatchRequest.create(table, fields, correlation=_correlation(entry))
        return BatchRequest.update(table, _target(entry, results), fields)

    def _answered(
        self, entry: Entry, request: BatchRequest, answer: Record | ServiceNowError
    ) -> RecordWritten | Exception:
        """What one entry's answer in a batch means, told to the breaker and the bucket."""
        if isinstance(answer, ServiceNowError):
            self._failed(answer)
            return answer
        if entry.kind == CREATE:
            return _written(entry, request.table, ref_value(answer.get("sys_id")) or "")
        return _written(entry, request.table, request.sys_id or "")

    async def _finish(self, entry: Entry, outcome: RecordWritten | Exception) -> None:
        """Record an entry's outcome in the journal (a lost lease drops it)."""
        try:
            await self._record(entry, outcome)
        except LeaseLost:
            log.info("entry %s: lease lost; its new owner will finish it", entry.key)

    async def _record(self, entry: Entry, outcome: RecordWritten | Exception) -> None:
        store, clock, owner = self._store, self._clock, self._owner
        if isinstance(outcome, RecordWritten):
            written = outcome
            results = {written_name(entry): written.sys_id} if entry.kind == CREATE else None
            await store.complete(
                entry.entry_id,
                owner,
                clock.time(),
                result={"sys_id": written.sys_id, "adopted": written.adopted},
                results=results,
            )
            if results:
                self._remember(entry.call_id, results)
            self._emit(written)
            for key in entry.payload.get(FOLDED, ()) if entry.kind == CREATE else ():
                # Updates folded into the create were written with it.
                self._emit(
                    RecordWritten(
                        written.call_id, str(key), written.name, UPDATE, written.table,
                        written.sys_id, adopted=False,
                    )
                )  # fmt: skip
        elif isinstance(outcome, _Settling):
            await store.retry(
                entry.entry_id,
                owner,
                clock.time(),
                outcome.until,
                entry.last_error or "settling",
            )
        elif isinstance(outcome, PermanentError | InvalidInput):
            # Refused for this entry's own sake (a bad field, a missing table): an operator
            # must look. An AuthenticationError is not: it concerns every entry, and waits
            # in the journal (below) while the breaker reports the instance down.
            reason = f"{type(outcome).__name__}: {outcome}"
            if _may_have_written(entry):
                # Keep the mark: after a replay the create must still look before posting.
                reason = f"{(entry.last_error or '').split(': ', 1)[0]}: {reason}"
            await store.kill(entry.entry_id, owner, clock.time(), reason)
            log.error("entry %s is dead: %s", entry.key, reason)
            self._emit(RecordDead(entry.call_id, entry.key, reason))
        elif isinstance(outcome, AmbiguousError):
            # A write ended ambiguously: the next attempt looks the record up first, and if
            # the request may still be running, the settle time counts from now.
            now = clock.time()
            wait = self._config.backoff.wait(entry.attempts, self._rng, outcome.retry_after)
            mark = f"{_AMBIGUOUS_MARK}{now!r}" if may_still_run(outcome) else _AMBIGUOUS
            if entry.kind == UPDATE and may_still_run(outcome):
                # An update cannot be looked up: sent again, or followed by the call's later
                # updates, while the first may still commit, it could land last and undo
                # them. It waits until that transaction is surely over (and so do the call's
                # later entries, which queue behind it).
                wait = max(wait, self._config.settle)
            await store.retry(entry.entry_id, owner, now, now + wait, f"{mark}: {outcome}")
            self._backed_off_for_trouble(entry, outcome)
        elif isinstance(outcome, ServiceNowError):
            now = clock.time()
            wait = self._config.backoff.wait(entry.attempts, self._rng, outcome.retry_after)
            note = f"{type(outcome).__name__}: {outcome}"
            if _may_have_written(entry):
                # Nothing was written now, but an earlier attempt may have: keep the mark.
                note = f"{(entry.last_error or '').split(': ', 1)[0]}: {note}"
            await store.retry(entry.entry_id, owner, now, now + wait, note)
            self._backed_off_for_trouble(entry, outcome)
        else:  # pragma: no cover (callers pass only the outcomes above)
            raise outcome

    async def _execute(self, entry: Entry) -> RecordWritten:
        """Send the entry's request(s), with quick retries in process; return what was written."""
        table, results, fields = await self._prepared(entry)

        async def once() -> RecordWritten:
            if entry.kind == CREATE:
                return await self._create(entry, table, fields)
            target = _target(entry, results)
            await self._pace()
            await self._call(self._client.update(table, target, fields, fields=_ANSWER_FIELDS))
            return _written(entry, table, target)

        attempts = retrying(
            retry_on=self._retry_in_process,
            clock=self._clock,
            attempts=self._config.attempts,
            backoff=self._config.backoff,
            rng=self._rng,
        )
        # Closed on the way out: an async generator left open by `return` is finalised
        # later through the event loop, which costs a wake-up per request.
        async with contextlib.aclosing(attempts):
            async for attempt in attempts:
                with attempt:
                    return await once()
        raise AssertionError("retrying() ends with a result or an error")  # pragma: no cover

    async def _prepared(self, entry: Entry) -> tuple[str, Mapping[str, str], Any]:
        """The entry's table, its call's results, and its fields with references resolved."""
        if entry.kind not in (CREATE, UPDATE):
            raise InvalidInput(f"entry {entry.key}: unknown kind {entry.kind!r}", field="kind")
        payload = entry.payload
        fields = payload.get("fields", {})
        refs = _refs(fields, set())
        results = await self._call_results(entry, refs)
        return (
            str(payload.get("table", "")),
            results,
            _resolve(fields, results, entry) if refs else fields,
        )

    async def _call_results(self, entry: Entry, needed: set[str]) -> Mapping[str, str]:
        """The call's results the entry needs, from what this drainer stored, else the store.

        `needed` holds the names its fields refer to; an update needs its target too.
        """
        if entry.kind == UPDATE:
            needed = {*needed, str(entry.payload.get("target", ""))}
        if not needed:
            return {}
        known = self._known.get(entry.call_id, {})
        if needed <= known.keys():
            return known
        results = await self._store.call_results(entry.call_id)
        self._remember(entry.call_id, results)
        return results

    def _remember(self, call_id: str, results: Mapping[str, str]) -> None:
        """Keep a call's results (stored by done entries, so they never change) for later."""
        self._known.setdefault(call_id, {}).update(results)
        if len(self._known) > _KNOWN_CALLS:
            del self._known[next(iter(self._known))]

    async def _create(self, entry: Entry, table: str, fields: dict[str, Any]) -> RecordWritten:
        field, value = _correlation(entry)
        client = self._client
        if _may_have_written(entry):
            # An earlier attempt may have created the record: look before posting. (The
            # lookup is paced like any request; a 429 or a refusal wrote nothing, so entries
            # that met only those skip it.)
            await self._pace()
            lookup = Query().eq(field, value)
            found = await self._call(client.query(table, lookup, fields=("sys_id",), limit=1))
            if found.records:
                sys_id = str(found.records[0].get("sys_id", ""))
                return _written(entry, table, sys_id, adopted=True)
            since = _ambiguous_since(entry)
            if since is not None and self._clock.time() < since + self._config.settle:
                # The earlier post may still be running on the instance: not found proves
                # nothing yet.
                raise _Settling(since + self._config.settle)
        self._check_post_window(entry)
        await self._pace()
        outcome = await self._call(
            client.create_once(table, fields, correlation=(field, value), fields=_ANSWER_FIELDS)
        )
        sys_id = str(outcome.record.get("sys_id", ""))
        return _written(entry, table, sys_id, adopted=not outcome.created)

    def _check_post_window(self, entry: Entry) -> None:
        """Raise `_Settling` when it is too late in the entry's lease to post its create."""
        if self._clock.time() > _claimed_at(entry, self._config.lease) + self._post_window:
            # Were this worker to die now, the next owner could not trust a lookup until the
            # request's transaction was surely over.
            raise _Settling(self._clock.time())

    def _retry_in_process(self, error: BaseException) -> bool:
        """Quick retries only for errors that wrote nothing, while the breaker is closed."""
        # A 429 goes back to the journal instead: sleeping out its Retry-After here would
        # hold a slot that other entries could use once the bucket lets them.
        if not isinstance(error, TransientError) or isinstance(error, RateLimited):
            return False
        return self.breaker().allow_request(self._clock.now())

    async def _pace(self, requests: int = 1) -> None:
        """Wait until the bucket lets `requests` requests go."""
        now = self._clock.now()
        wait = max(self._bucket.reserve(now) for _ in range(requests))
        if wait > 0:
            await self._clock.sleep(wait)

    async def _call(self, request: Awaitable[Any]) -> Any:
        """Await one request and tell the breaker and the bucket how it went."""
        breaker = self.breaker()
        seen = self._client.rate_limit
        try:
            result = await request
        except ServiceNowError as error:
            self._failed(error, breaker)
            raise
        now = self._clock.now()
        self._bucket.record_success(now)
        limit = self._client.rate_limit
        if limit is seen:
            # No rate-limit headers on this answer: a per-second rule seen before may be gone.
            self._bucket.no_limit_seen(now)
        elif limit is not None and limit.limit is not None and limit.reset is not None:
            window_left = limit.reset.timestamp() - self._clock.time()
            self._bucket.observe_limit(limit.limit, window_left, now=now)
        # The client may have moved to the next URL inside the request: the success is that
        # URL's (a failure stays with the URL the request was meant for).
        self._emit_all(self.breaker().record_success(now))
        return result

    def _failed(self, error: ServiceNowError, breaker: CircuitBreaker | None = None) -> None:
        """Tell the bucket and the breaker (default: the current one) about a failure."""
        breaker = breaker or self.breaker()
        now = self._clock.now()
        if isinstance(error, RateLimited):
            self._bucket.record_rate_limited(now, error.retry_after)
            if (error.retry_after or 0.0) > self._config.hold_over:
                self._emit_all(breaker.hold(now, error.retry_after or 0.0, "429 with a long wait"))
        elif isinstance(error, TransientError | AmbiguousError | AuthenticationError):
            self._emit_all(breaker.record_failure(now, reason=type(error).__name__))
        else:
            # The instance answered (with a refusal): it is up.
            self._emit_all(breaker.record_success(now))

    # -- events ------------------------------------------------------------------------------

    def _emit_all(self, events: list[BreakerStateChanged]) -> None:
        for event in events:
            if event.new is BreakerState.CLOSED:
                self._recovered = True
            log.warning(
                "breaker %s: %s -> %s (%s)",
                event.endpoint,
                event.old.value,
                event.new.value,
                event.reason,
            )
            self._emit(event)

    def _emit(self, event: DrainerEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("an event handler failed on %s", type(event).__name__)


def written_name(entry: Entry) -> str:
    """The name a create entry stores its sys_id under."""
    return str(entry.payload.get("name", entry.key))


def _may_have_written(entry: Entry) -> bool:
    """Whether an earlier attempt of a create may have written its record."""
    error = entry.last_error or ""
    return error.startswith((_AMBIGUOUS, _TAKEOVER))


def _written(entry: Entry, table: str, sys_id: str, *, adopted: bool = False) -> RecordWritten:
    """What writing `entry`'s record did: its create stored under its name, or its update."""
    name = written_name(entry) if entry.kind == CREATE else str(entry.payload.get("target", ""))
    return RecordWritten(entry.call_id, entry.key, name, entry.kind, table, sys_id, adopted)


def _correlation(entry: Entry) -> tuple[str, str]:
    """The field and value a create entry's record is looked up by."""
    field, value = (str(part) for part in entry.payload.get("correlation", ("", "")))
    return field, value


def _target(entry: Entry, results: Mapping[str, str]) -> str:
    """The sys_id of the record an update entry changes."""
    target = results.get(str(entry.payload.get("target", "")))
    if target is None:
        raise InvalidInput(
            f"entry {entry.key}: no record named {entry.payload.get('target')!r} exists "
            "for this call; an update must follow the create of its record",
            field="target",
        )
    return target


def _claimed_at(entry: Entry, lease: float) -> float:
    """When this worker claimed the entry (its lease ends `lease` seconds later)."""
    return (entry.lease_until or 0.0) - lease


def _ambiguous_since(entry: Entry) -> float | None:
    """When the entry's first ambiguous failure happened, if its last failure was one."""
    error = entry.last_error or ""
    if not error.startswith(_AMBIGUOUS_MARK):
        return None
    stamp = error[len(_AMBIGUOUS_MARK) :].split(":", 1)[0]
    try:
        return float(stamp)
    except ValueError:
        return None


#: The JSON values that hold no placeholder (checked first: most fields are strings).
_SCALARS: Final = (str, int, float, type(None))


def _refs(value: Any, found: set[str]) -> set[str]:
    """Add to `found` the names that ``{"$ref": name}`` placeholders in `value` refer to."""
    if isinstance(value, Mapping):
        if len(value) == 1 and "$ref" in value:
            found.add(str(value["$ref"]))
        else:
            for item in value.values():
                if not isinstance(item, _SCALARS):
                    _refs(item, found)
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, _SCALARS):
                _refs(item, found)
    return found


def _resolve(value: Any, results: Mapping[str, str], entry: Entry) -> Any:
    """Replace every ``{"$ref": name}`` with the sys_id stored under `name`."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        if len(value) == 1 and "$ref" in value:
            name = str(value["$ref"])
            if name not in results:
                raise InvalidInput(
                    f"entry {entry.key}: it refers to {name!r}, which this call has not "
                    "created; the journal keeps each call's entries in order, so this is a bug "
                    "in the intents",
                    field="payload",
                )
            return results[name]
        return {str(k): _resolve(v, results, entry) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results, entry) for v in value]
    return value
