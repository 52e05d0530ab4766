"""The Prometheus metrics: counters from events, gauges from `status()`, request latency."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import httpx

from ..engine import CallOffered, OfferEnded, OfferRejected, OfferTimedOut
from ..health import Mode, ModeChanged
from ..journal import RecordDead, RecordWritten
from ..resilience import BreakerState, BreakerStateChanged
from ..routing import CallAbandoned, CallConnected, CallEnded, CallOverflowed, CallRedirected

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .._clock import Clock
    from ..engine import Engine

__all__ = ["LATENCY_BUCKETS", "Metrics", "TimedTransport"]

log = logging.getLogger("callresilience.metrics")

#: Request latency buckets, in seconds: ServiceNow cancels a transaction after 60 s.
LATENCY_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TABLE_PREFIXES: Final = ("/api/now/table/", "/api/now/v1/table/", "/api/now/v2/table/")


def _prometheus() -> Any:
    try:
        import prometheus_client  # noqa: PLC0415 (an optional dependency)
    except ImportError as error:
        raise ImportError(
            "callresilience.metrics needs prometheus-client; install the metrics extra: "
            "pip install 'callresilience[metrics]'"
        ) from error
    return prometheus_client


class Metrics:
    """The engine's Prometheus metrics, in one registry.

    Args:
        registry: Where the metrics are registered. Default: a new `CollectorRegistry`
            (never the global one, so two engines in one process never collide); expose it
            with ``prometheus_client.start_http_server(port, registry=metrics.registry)``.

    Raises:
        ImportError: prometheus-client is not installed (the message names the extra).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = _prometheus()
        self.registry: CollectorRegistry = (
            registry if registry is not None else prom.CollectorRegistry()
        )

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return prom.Counter(name, text, labels, registry=self.registry)

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return prom.Gauge(name, text, labels, registry=self.registry)

        p = "callresilience_"
        self.calls = counter(f"{p}calls", "Calls finished, by outcome.", ("outcome",))
        self.offers = counter(f"{p}offers", "Offers that ended, by outcome.", ("outcome",))
        self.offers_sent = counter(f"{p}offers_sent", "Offers sent to agents.")
        self.records_created = counter(
            f"{p}records_created", "Records created on the instance, by table.", ("table",)
        )
        self.records_adopted = counter(
            f"{p}records_adopted",
            "Creates that found their record already there (an earlier answer was lost).",
            ("table",),
        )
        self.records_updated = counter(
            f"{p}records_updated", "Records updated on the instance, by table.", ("table",)
        )
        self.records_dead = counter(
            f"{p}records_dead", "Journal entries the instance refused for good."
        )
        self.breaker_state = gauge(
            f"{p}breaker_state",
            "1 for the state each endpoint's circuit breaker is in, 0 for the others.",
            ("endpoint", "state"),
        )
        self.mode = gauge(
            f"{p}mode", "1 for the mode each scope is in, 0 for the other.", ("scope", "mode")
        )
        self.journal_depth = gauge(f"{p}journal_depth", "Journal entries pending or in flight.")
        self.journal_oldest = gauge(
            f"{p}journal_oldest_pending_age_seconds",
            "Age of the oldest pending or in-flight journal entry (0 when there is none).",
        )
        self.journal_dead = gauge(
            f"{p}journal_dead_entries", "Dead journal entries waiting for an operator."
        )
        self.journal_entries = gauge(f"{p}journal_entries", "Journal entries by state.", ("state",))
        self.calls_waiting = gauge(f"{p}calls_waiting", "Calls waiting for an agent.")
        self.calls_active = gauge(f"{p}calls_active", "Calls offered or connected.")
        self.agents = gauge(f"{p}agents", "Logged-in agents by state.", ("state",))
        self.request_seconds = prom.Histogram(
            f"{p}servicenow_request_duration_seconds",
            "ServiceNow requests, from sending to the answer's headers.",
            ("method", "table", "code"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._agent_states: set[str] = set()

    # -- events ------------------------------------------------------------------------------

    def attach(self, engine: Engine) -> Callable[[], None]:
        """Follow `engine`'s events from now on; return a function that stops it."""
        return engine.subscribe(self.observe)

    def observe(self, event: object) -> None:
        """Count one engine event (the subscriber `attach` installs)."""
        if isinstance(event, CallOffered):
            self.offers_sent.inc()
        elif isinstance(event, CallConnected):
            self.offers.labels("accepted").inc()
        elif isinstance(event, OfferRejected):
            self.offers.labels("rejected").inc()
        elif isinstance(event, OfferTimedOut):
            self.offers.labels("no_answer").inc()
        elif isinstance(event, CallRedirected | OfferEnded):
            # An ended offer comes with one of the two: CallRedirected when its call goes back
            # in line, OfferEnded when the call overflows. Rejected and unanswered offers have
            # their own events, counted above.
            if event.outcome.value not in ("rejected", "no_answer"):
                self.offers.labels(event.outcome.value).inc()
        elif isinstance(event, CallEnded):
            self.calls.labels("answered").inc()
        elif isinstance(event, CallAbandoned):
            if event.agent_id is not None:
                self.offers.labels("withdrawn").inc()
            self.calls.labels("abandoned").inc()
        elif isinstance(event, CallOverflowed):
            self.calls.labels("overflowed").inc()
        elif isinstance(event, RecordWritten):
            self._written(event)
        elif isinstance(event, RecordDead):
            self.records_dead.inc()
        elif isinstance(event, BreakerStateChanged):
            self._breaker(event.endpoint, event.new.value)
        elif isinstance(event, ModeChanged):
            self._mode(event.scope, event.new.value)

    def _written(self, event: RecordWritten) -> None:
        # By table, not by the record's name: work items are named per missed offer.
        if event.kind == "create":
            self.records_created.labels(event.table).inc()
            if event.adopted:
                self.records_adopted.labels(event.table).inc()
        else:
            self.records_updated.labels(event.table).inc()

    def _breaker(self, endpoint: str, state: str) -> None:
        for each in BreakerState:
            self.breaker_state.labels(endpoint, each.value).set(int(each.value == state))

    def _mode(self, scope: str, mode: str) -> None:
        for each in Mode:
            self.mode.labels(scope, each.value).set(int(each.value == mode))

    # -- polled gauges -----------------------------------------------------------------------

    async def refresh(self, engine: Engine) -> None:
        """Set the polled gauges from ``await engine.status()``."""
        self.update(await engine.status())

    def update(self, status: dict[str, Any]) -> None:
        """Set the polled gauges from a status snapshot (the dict `Engine.status` returns)."""
        journal = status["journal"]
        self.journal_depth.set(journal["depth"])
        self.journal_oldest.set(journal["oldest_pending_age_s"] or 0.0)
        self.journal_dead.set(journal["dead"])
        for state in ("pending", "in_flight", "done", "dead"):
            self.journal_entries.labels(state).set(journal[state])
        self.calls_waiting.set(status["calls"]["waiting"])
        self.calls_active.set(status["calls"]["active"])
        agents: dict[str, int] = status["agents"]
        for state in self._agent_states - agents.keys():
            self.agents.labels(state).set(0)
        for state, count in agents.items():
            self.agents.labels(state).set(count)
        self._agent_states |= agents.keys()
        for endpoint, state in status["servicenow"]["breakers"].items():
            self._breaker(endpoint, state)
        for scope, mode in status["modes"].items():
            self._mode(scope, mode)

    async def poll(
        self, engine: Engine, every: float = 15.0, *, clock: Clock | None = None
    ) -> None:
        """Call `refresh` every `every` seconds until cancelled; a failed refresh is logged.

        Run it as a task next to the engine: ``asyncio.create_task(metrics.poll(engine))``.
        """
        while True:
            try:
                await self.refresh(engine)
            except Exception:
                log.exception("refreshing the metrics from engine.status() failed")
            if clock is None:
                await asyncio.sleep(every)
            else:
                await clock.sleep(every)

    # -- request latency ---------------------------------------------------------------------

    def instrument(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        clock: Clock | None = None,
    ) -> TimedTransport:
        """Return a transport that times every request into the latency histogram.

        Pass it to the engine (``Engine(config, channel, transport=metrics.instrument())``)
        or to a `ServiceNowClient`.

        Args:
            transport: The transport to wrap, e.g. `aiohttp_transport()`. Default: httpx's
                own, with TLS verification on. An explicit transport makes httpx ignore the
                ``HTTPS_PROXY`` variables: wrap ``httpx.AsyncHTTPTransport(proxy=...)`` if
                you need a proxy.
            clock: Where durations are measured (default: ``time.perf_counter``).
        """
        inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        now = clock.now if clock is not None else time.perf_counter
        return TimedTransport(inner, self._observe_request, now)

    def _observe_request(self, request: httpx.Request, code: str, seconds: float) -> None:
        self.request_seconds.labels(request.method, _table(request), code).observe(seconds)


def _table(request: httpx.Request) -> str:
    """The Table API table a request is for; ``"oauth"`` for a token request; else ``"other"``."""
    path = request.url.path
    for prefix in _TABLE_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :].split("/", 1)[0] or "other"
    return "oauth" if path.endswith("oauth_token.do") else "other"


class TimedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that reports how long each request took to `observe`.

    The time runs from sending the request to receiving the answer's headers; the code is the
    HTTP status, or ``"error"`` when no answer came (refused, timed out, broken).
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        observe: Callable[[httpx.Request, str, float], None],
        now: Callable[[], float],
    ) -> None:
        self._inner = inner
        self._observe = observe
        self._now = now

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request through the wrapped transport, timing it."""
        started = self._now()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            self._observe(request, "error", self._now() - started)
            raise
        self._observe(request, str(response.status_code), self._now() - started)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()
