"""Faults the FakeServiceNow can inject, and the schedule that says when they apply.

A fault is a frozen value that says *what* goes wrong. The `FaultSchedule` says *when* (a
window on the fake's clock), *for what* (methods, tables) and *how often* (a probability drawn
from the fake's seeded `random.Random`). Deciding what happens to one request is pure:
`decide()` and `check_rate_limits()` take `now` and an rng and do no I/O; the HTTP layers act
on the `Decision`.

Faults act at four stages, in this order, and the first stage that fires wins:

1. connection: `RefuseConnections`, `BlackHole` (no HTTP answer at all);
2. instance: `Hibernating`, `ServiceUnavailable` (answered before authentication);
3. rate limit: `RateLimit` (after authentication, Table API only);
4. processing: `DropResponse`, `BrokenOk`, `TransactionCancelled` (around the commit).

`Latency` adds to the time before any answer, and `ExpireTokens` revokes every bearer token
before the request is authenticated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Literal, TypeAlias

import attrs

from .._clock import Clock

__all__ = [
    "BlackHole",
    "BrokenOk",
    "Decision",
    "DropResponse",
    "ExpireTokens",
    "Fault",
    "FaultSchedule",
    "Hibernating",
    "Latency",
    "RateLimit",
    "RateLimitVerdict",
    "RateWindow",
    "RefuseConnections",
    "ScheduledFault",
    "ServiceUnavailable",
    "TransactionCancelled",
    "decide",
    "rate_limit_step",
]


@attrs.frozen
class RefuseConnections:
    """Refuse TCP connections, as when the instance or its load balancer is down.

    In process the transport raises `httpx.ConnectError`. Over loopback HTTP the listening
    socket is closed while an unfiltered, certain (probability 1) refusal is active, so a
    client really gets "connection refused"; a filtered or probabilistic refusal closes the
    connection of each matching request without an answer instead.
    """


@attrs.frozen
class BlackHole:
    """Accept the request and never answer it (a hung load balancer or a dead route).

    The request waits until the client's read timeout passes on the fake's clock (in
    process: `httpx.ReadTimeout`) or until `FakeServiceNow.release_black_holes()` or
    shutdown, when the connection is closed without an answer.
    """


@attrs.frozen
class ServiceUnavailable:
    """Answer 503 with a ServiceNow-style error envelope, before authentication.

    Attributes:
        retry_after: Seconds to put in a `Retry-After` header, or None for no header.
    """

    retry_after: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Hibernating:
    """Answer 200 `text/html` with the "Instance Hibernating page", as a sleeping PDI does."""


@attrs.frozen
class Latency:
    """Delay the answer on the fake's clock.

    The delay is `seconds`, plus for `"uniform"` a draw from U(0, `spread`), or for
    `"exponential"` a draw with mean `spread`, capped at `cap` when given. A request whose
    delay exceeds the client's read timeout gets `httpx.ReadTimeout` in process, and the
    instance still processes (and commits) it when the delay is over, as a real one does.

    Attributes:
        seconds: The fixed part of the delay.
        distribution: `"fixed"`, `"uniform"` or `"exponential"`.
        spread: The width (uniform) or mean (exponential) of the random part.
        cap: The largest total delay, or None.
    """

    seconds: float = attrs.field(validator=attrs.validators.ge(0.0))
    distribution: Literal["fixed", "uniform", "exponential"] = attrs.field(
        default="fixed",
        kw_only=True,
        validator=attrs.validators.in_(("fixed", "uniform", "exponential")),
    )
    spread: float = attrs.field(default=0.0, kw_only=True, validator=attrs.validators.ge(0.0))
    cap: float | None = attrs.field(default=None, kw_only=True)

    def sample(self, rng: random.Random) -> float:
        """Draw one delay from `rng`.

        Args:
            rng: The fake's seeded generator.

        Returns:
            The delay in seconds.
        """
        extra = 0.0
        if self.distribution == "uniform":
            extra = rng.uniform(0.0, self.spread)
        elif self.distribution == "exponential" and self.spread > 0:
            extra = rng.expovariate(1.0 / self.spread)
        delay = self.seconds + extra
        return delay if self.cap is None else min(delay, self.cap)


@attrs.frozen
class RateLimit:
    """Allow `limit` Table API requests per hour (or per second), then answer 429.

    Windows are aligned on the fake's UNIX time (`Clock.time()`), like an hourly rule. Denied
    requests get `Retry-After`, `X-RateLimit-Limit`, `X-RateLimit-Reset` and
    `X-RateLimit-Rule` with the documented body; allowed requests matched by the rule carry
    the three `X-RateLimit-*` headers too. There is no `X-RateLimit-Remaining`, as on a real
    instance. Denied requests do not count. The schedule's `probability` does not apply.

    Attributes:
        limit: Requests allowed per window.
        per: `"hour"` or `"second"`.
        rule_sys_id: The sys_id of the rule, sent in `X-RateLimit-Rule`.
    """

    limit: int = attrs.field(validator=attrs.validators.ge(1))
    per: Literal["hour", "second"] = attrs.field(
        default="hour", kw_only=True, validator=attrs.validators.in_(("hour", "second"))
    )
    rule_sys_id: str = attrs.field(default="f2a1c3d4e5f60718293a4b5c6d7e8f90", kw_only=True)

    @property
    def window(self) -> float:
        """The window length in seconds."""
        return 3600.0 if self.per == "hour" else 1.0


@attrs.frozen
class DropResponse:
    """Process the request (committing a write), then close the connection without answering.

    This is the ambiguous case: the record exists but the client saw a connection reset. In
    process the transport raises `httpx.RemoteProtocolError`.

    Attributes:
        commit: Set False to drop the connection before the request is processed.
    """

    commit: bool = attrs.field(default=True, kw_only=True)


@attrs.frozen
class BrokenOk:
    """Process the request, then answer 200 with truncated JSON followed by an error object.

    This is the "Transaction cancelled: maximum execution time exceeded" body that ServiceNow
    sends when it cancels a transaction in the middle of writing a response. Only successful
    answers with a body are broken; errors are sent as they are.
    """


@attrs.frozen
class TransactionCancelled:
    """Answer 500 "Transaction cancelled: maximum execution time exceeded".

    Attributes:
        commit: Process (and commit) the request first, as has been seen on POST.
    """

    commit: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen
class ExpireTokens:
    """Revoke every bearer token issued so far, as if they had all expired.

    While active, each matching request first revokes every token, so a client keeps
    getting 401 for bearer tokens until the fault ends.
    """


Fault: TypeAlias = (
    RefuseConnections
    | BlackHole
    | ServiceUnavailable
    | Hibernating
    | Latency
    | RateLimit
    | DropResponse
    | BrokenOk
    | TransactionCancelled
    | ExpireTokens
)

_CONNECTION = (RefuseConnections, BlackHole)
_INSTANCE = (Hibernating, ServiceUnavailable)
_PROCESSING = (DropResponse, BrokenOk, TransactionCancelled)


def _methods(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(m.upper() for m in value)


def _tables(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


@attrs.frozen
class ScheduledFault:
    """A fault with its window and scope, as returned by `FaultSchedule.add()`.

    Attributes:
        id: A number unique within its schedule.
        fault: What goes wrong.
        start: When it starts, on the fake's monotonic clock (`Clock.now()`).
        end: When it stops (exclusive); `math.inf` for never.
        probability: The chance that it applies to a matching request.
        methods: HTTP methods it applies to, or None for all.
        tables: Table names it applies to, or None for every request (including the OAuth
            token endpoint, which has no table).
    """

    id: int
    fault: Fault
    start: float
    end: float = math.inf
    probability: float = attrs.field(
        default=1.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    methods: frozenset[str] | None = attrs.field(default=None, converter=_methods)
    tables: frozenset[str] | None = attrs.field(default=None, converter=_tables)

    def active(self, now: float) -> bool:
        """Return whether `now` falls in the window."""
        return self.start <= now < self.end

    def matches(self, method: str, table: str | None) -> bool:
        """Return whether a request with this method and table is in scope."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.tables is None or (table is not None and table in self.tables)

    @property
    def unconditional(self) -> bool:
        """Whether it applies to every request in its window (no filter, probability 1)."""
        return self.methods is None and self.tables is None and self.probability >= 1.0


@attrs.frozen
class Decision:
    """What the faults do to one request.

    Attributes:
        connection: A connection-stage fault, or None.
        instance: An instance-stage fault, or None.
        processing: A processing-stage fault, or None.
        latency: Seconds to wait before answering.
        expire_tokens: Whether to revoke every bearer token first.
    """

    connection: RefuseConnections | BlackHole | None = None
    instance: Hibernating | ServiceUnavailable | None = None
    processing: DropResponse | BrokenOk | TransactionCancelled | None = None
    latency: float = 0.0
    expire_tokens: bool = False


def decide(
    entries: Iterable[ScheduledFault],
    *,
    method: str,
    table: str | None,
    now: float,
    rng: random.Random,
    table_scoped_only: bool = False,
) -> Decision:
    """Decide what the scheduled faults do to one request.

    Entries are taken in order. Each active entry in scope draws once from `rng` when its
    probability is below 1 (so a certain fault never consumes randomness), and a `Latency`
    draws its delay. Within a stage, the first entry that fires wins. `RateLimit` entries are
    skipped: see `check_rate_limits()`.

    Args:
        entries: The scheduled faults.
        method: The HTTP method.
        table: The table of a Table API request, or None.
        now: The fake's monotonic time.
        rng: The fake's seeded generator.
        table_scoped_only: Consider only entries scoped to tables (`tables` not None). The
            fake decides this way for each sub-request of a Batch API request, whose
            unscoped faults were already decided once for the batch as a whole.

    Returns:
        The decision.
    """
    connection: RefuseConnections | BlackHole | None = None
    instance: Hibernating | ServiceUnavailable | None = None
    processing: DropResponse | BrokenOk | TransactionCancelled | None = None
    latency = 0.0
    expire = False
    for entry in entries:
        fault = entry.fault
        if isinstance(fault, RateLimit) or (table_scoped_only and entry.tables is None):
            continue
        if not (entry.active(now) and entry.matches(method, table)):
            continue
        if entry.probability < 1.0 and rng.random() >= entry.probability:
            continue
        if isinstance(fault, Latency):
            latency += fault.sample(rng)
        elif isinstance(fault, ExpireTokens):
            expire = True
        elif isinstance(fault, _CONNECTION):
            connection = connection or fault
        elif isinstance(fault, _INSTANCE):
            instance = instance or fault
        else:
            processing = processing or fault
    return Decision(connection, instance, processing, latency, expire)


@attrs.frozen
class RateWindow:
    """The count of allowed requests in one rate-limit window.

    Args:
        start: The UNIX time the window began.
        count: Requests allowed in it so far.
    """

    start: float
    count: int = 0


@attrs.frozen
class RateLimitVerdict:
    """The outcome of the rate-limit rules for one request.

    Attributes:
        allowed: Whether the request may proceed.
        rule: The rule that decided (the denying one, else the first match).
        reset: The UNIX time the rule's window ends.
        retry_after: Whole seconds until then (at least 1).
    """

    allowed: bool
    rule: RateLimit
    reset: int
    retry_after: int

    def headers(self) -> list[tuple[str, str]]:
        """Return the `X-RateLimit-*` headers, and `Retry-After` when denied."""
        headers = [
            ("X-RateLimit-Limit", str(self.rule.limit)),
            ("X-RateLimit-Reset", str(self.reset)),
            ("X-RateLimit-Rule", self.rule.rule_sys_id),
        ]
        if not self.allowed:
            headers.insert(0, ("Retry-After", str(self.retry_after)))
        return headers

    def detail(self) -> str:
        """Return the documented 429 detail, e.g. "Rate limit of 100 requests per hour ..."."""
        return (
            f"Rate limit of {self.rule.limit} requests per {self.rule.per} for Table API exceeded"
        )


def rate_limit_step(
    rule: RateLimit, window: RateWindow | None, unix: float
) -> tuple[RateWindow, bool]:
    """Advance one rule's window to `unix` and say whether one more request fits.

    Args:
        rule: The rule.
        window: Its current window, or None before the first request.
        unix: The fake's UNIX time.

    Returns:
        The (possibly new) window, not yet counting this request, and whether it fits.
    """
    start = math.floor(unix / rule.window) * rule.window
    if window is None or window.start != start:
        window = RateWindow(start)
    return window, window.count < rule.limit


@attrs.define
class FaultSchedule:
    """The faults in force, changeable while the fake runs.

    Attributes:
        clock: The fake's clock; `add()` reads it for a window that starts "now".
    """

    _clock: Clock
    _entries: list[ScheduledFault] = attrs.field(init=False, factory=list)
    _windows: dict[int, RateWindow] = attrs.field(init=False, factory=dict, repr=False)
    _ids: int = attrs.field(init=False, default=0, repr=False)
    _listeners: list[Callable[[], None]] = attrs.field(init=False, factory=list, repr=False)

    @property
    def entries(self) -> tuple[ScheduledFault, ...]:
        """The scheduled faults, in the order they were added."""
        return tuple(self._entries)

    def add(
        self,
        fault: Fault,
        *,
        start: float | None = None,
        after: float | None = None,
        duration: float | None = None,
        probability: float = 1.0,
        methods: Iterable[str] | None = None,
        tables: Iterable[str] | None = None,
    ) -> ScheduledFault:
        """Schedule `fault`.

        Args:
            fault: What goes wrong.
            start: When it starts on the fake's monotonic clock; default: now.
            after: Alternatively, seconds from now until it starts.
            duration: How long it lasts; None for until removed.
            probability: The chance it applies to each matching request.
            methods: HTTP methods it applies to (e.g. `{"POST"}`); None for all.
            tables: Tables it applies to; None for every request.

        Returns:
            The scheduled entry, to pass to `remove()`.

        Raises:
            ValueError: If both `start` and `after` are given, or `duration` is negative.
        """
        if start is not None and after is not None:
            raise ValueError("give start or after, not both")
        if duration is not None and duration < 0:
            raise ValueError("duration must not be negative")
        if start is None:
            start = self._clock.now() + (after or 0.0)
        end = math.inf if duration is None else start + duration
        self._ids += 1
        entry = ScheduledFault(self._ids, fault, start, end, probability, methods, tables)
        self._entries.append(entry)
        self._changed()
        return entry

    def remove(self, entry: ScheduledFault) -> None:
        """Remove a scheduled fault (no error if it is already gone)."""
        self._entries = [e for e in self._entries if e.id != entry.id]
        self._windows.pop(entry.id, None)
        self._changed()

    def clear(self) -> None:
        """Remove every fault and forget rate-limit counts."""
        self._entries.clear()
        self._windows.clear()
        self._changed()

    def decide(
        self,
        *,
        method: str,
        table: str | None,
        rng: random.Random,
        table_scoped_only: bool = False,
    ) -> Decision:
        """Run `decide()` over the schedule at the clock's current time."""
        return decide(
            self._entries,
            method=method,
            table=table,
            now=self._clock.now(),
            rng=rng,
            table_scoped_only=table_scoped_only,
        )

    def check_rate_limits(self, *, method: str, table: str) -> RateLimitVerdict | None:
        """Count one Table API request against the active rate-limit rules in scope.

        The request counts against every matching rule only if all of them allow it.

        Returns:
            None when no rule matches, else the verdict.
        """
        now, unix = self._clock.now(), self._clock.time()
        matched: list[tuple[ScheduledFault, RateLimit, RateWindow, bool]] = []
        for entry in self._entries:
            if (
                isinstance(entry.fault, RateLimit)
                and entry.active(now)
                and entry.matches(method, table)
            ):
                window, fits = rate_limit_step(entry.fault, self._windows.get(entry.id), unix)
                matched.append((entry, entry.fault, window, fits))
        if not matched:
            return None
        denied = [m for m in matched if not m[3]]
        _, rule, window, _ = denied[0] if denied else matched[0]
        for entry, _rule, win, _fits in matched:
            self._windows[entry.id] = win if denied else attrs.evolve(win, count=win.count + 1)
        reset = int(window.start + rule.window)
        return RateLimitVerdict(
            allowed=not denied,
            rule=rule,
            reset=reset,
            retry_after=max(1, math.ceil(reset - unix)),
        )

    def refusing_connections(self, now: float) -> bool:
        """Whether an unconditional `RefuseConnections` is active at `now`."""
        return any(
            isinstance(e.fault, RefuseConnections) and e.unconditional and e.active(now)
            for e in self._entries
        )

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every change; return a function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
