"""Prometheus metrics: names, counters from engine events, polled gauges, request latency."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from callresilience import Call
from callresilience.engine import Engine
from callresilience.health import Mode, ModeChanged
from callresilience.journal import EntryState, MemoryJournal, RecordDead, RecordWritten
from callresilience.metrics import Metrics
from callresilience.resilience import BreakerState, BreakerStateChanged
from callresilience.routing import (
    CallAbandoned,
    CallOverflowed,
    CallRedirected,
    OfferOutcome,
    OverflowReason,
)
from callresilience.testing import FakeServiceNow, ManualClock, RefuseConnections

from .engine.conftest import ADA, BEN, RecordingChannel, Rig, make_config

pytestmark = pytest.mark.anyio

ENDPOINT = "https://fake.service-now.com"


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample's value (0 when the series does not exist yet)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def metered_rig() -> AsyncIterator[tuple[Rig, Metrics]]:
    """An engine on virtual time whose requests go through the metrics' timed transport."""
    clock = ManualClock()
    fake = FakeServiceNow(clock=clock, user="sn", password="pw")
    channel = RecordingChannel(clock)
    metrics = Metrics()
    engine = Engine(
        make_config(),
        channel,
        clock=clock,
        transport=metrics.instrument(fake.transport(), clock=clock),
        store=MemoryJournal(),
    )
    events: list[Any] = []
    engine.subscribe(events.append)
    metrics.attach(engine)
    async with engine:
        await engine.login(ADA, ready=True)
        await engine.login(BEN, ready=True)
        yield Rig(clock, fake, channel, engine, events), metrics


def call(rig: Rig, call_id: str) -> Call:
    """A call arriving now."""
    return Call(call_id, "+14155550100", "support", rig.clock.now())


# -- the registry ----------------------------------------------------------------------------


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus-client, Metrics() says which extra to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"callresilience\[metrics\]"):
        Metrics()


def test_each_metrics_has_its_own_registry() -> None:
    """Two Metrics never collide, and nothing lands in the global registry."""
    import prometheus_client

    first, second = Metrics(), Metrics()
    assert first.registry is not second.registry
    assert prometheus_client.REGISTRY.get_sample_value("callresilience_calls_total") is None


def test_an_injected_registry_is_used() -> None:
    """A registry passed in receives the metrics."""
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    assert Metrics(registry).registry is registry


def test_names_follow_prometheus_conventions() -> None:
    """Every name has the prefix; counters end in _total; durations are in seconds."""
    metrics = Metrics()
    families = {family.name: family.type for family in metrics.registry.collect()}
    assert families == {
        "callresilience_calls": "counter",
        "callresilience_offers": "counter",
        "callresilience_offers_sent": "counter",
        "callresilience_records_created": "counter",
        "callresilience_records_adopted": "counter",
        "callresilience_records_updated": "counter",
        "callresilience_records_dead": "counter",
        "callresilience_breaker_state": "gauge",
        "callresilience_mode": "gauge",
        "callresilience_journal_depth": "gauge",
        "callresilience_journal_oldest_pending_age_seconds": "gauge",
        "callresilience_journal_dead_entries": "gauge",
        "callresilience_journal_entries": "gauge",
        "callresilience_calls_waiting": "gauge",
        "callresilience_calls_active": "gauge",
        "callresilience_agents": "gauge",
        "callresilience_servicenow_request_duration_seconds": "histogram",
    }
    metrics.offers.labels("accepted").inc()
    exposed = prometheus_client_text(metrics)
    assert 'callresilience_offers_total{outcome="accepted"} 1.0' in exposed


def prometheus_client_text(metrics: Metrics) -> str:
    """The registry in the text exposition format."""
    import prometheus_client

    return prometheus_client.generate_latest(metrics.registry).decode()


# -- events ----------------------------------------------------------------------------------


def test_events_without_their_own_counter_are_counted_where_they_belong() -> None:
    """Redirects count only outcomes without their own event; overflows, deaths, modes."""
    metrics = Metrics()
    for outcome in OfferOutcome:
        metrics.observe(CallRedirected("c1", "ada", outcome))
    metrics.observe(CallOverflowed("c1", OverflowReason.MAX_WAIT, 30.0))
    metrics.observe(CallAbandoned("c2", 5.0, None))  # hung up in the queue: no offer ended
    metrics.observe(RecordDead("c1", "c1:phone_log", "PermanentError"))
    metrics.observe(
        RecordWritten(
            "c1", "c1:interaction", "interaction", "create", "interaction", "a" * 32, adopted=True
        )
    )
    metrics.observe(ModeChanged("emea", Mode.NORMAL, Mode.RESILIENCY, 0.0, "outage"))
    metrics.observe(BreakerStateChanged(ENDPOINT, BreakerState.CLOSED, BreakerState.OPEN, 0, "x"))
    metrics.observe(object())  # anything else is ignored
    offers = {
        o.value: value(metrics, "callresilience_offers_total", outcome=o.value)
        for o in OfferOutcome
    }
    assert offers == {
        "accepted": 1,
        "rejected": 0,
        "no_answer": 0,
        "unreachable": 1,
        "withdrawn": 1,
        "cancelled": 1,
    }
    assert value(metrics, "callresilience_calls_total", outcome="overflowed") == 1
    assert value(metrics, "callresilience_calls_total", outcome="abandoned") == 1
    assert value(metrics, "callresilience_records_dead_total") == 1
    assert value(metrics, "callresilience_records_adopted_total", table="interaction") == 1
    assert value(metrics, "callresilience_records_created_total", table="interaction") == 1
    assert value(metrics, "callresilience_mode", scope="emea", mode="resiliency") == 1
    assert value(metrics, "callresilience_mode", scope="emea", mode="normal") == 0
    assert value(metrics, "callresilience_breaker_state", endpoint=ENDPOINT, state="open") == 1
    assert value(metrics, "callresilience_breaker_state", endpoint=ENDPOINT, state="closed") == 0


async def test_an_engine_run_is_counted() -> None:
    """Offers, calls and records follow the engine's events; requests are timed by table."""
    async with metered_rig() as (rig, metrics):
        engine = rig.engine
        await engine.call_arrived(call(rig, "c1"))
        await engine.reject("c1", "ada")
        await rig.settle()
        await engine.accept("c1", "ben")
        await rig.advance(10)
        await engine.end("c1")
        await rig.drained()
        await engine.call_arrived(call(rig, "c2"))
        await engine.hangup("c2")
        await engine.call_arrived(call(rig, "c3"))
        await rig.advance(25)  # the offer rings out after 20 s
        await engine.hangup("c3")
        await rig.drained()
        await metrics.refresh(engine)

    def offers(outcome: str) -> float:
        return value(metrics, "callresilience_offers_total", outcome=outcome)

    assert (offers("rejected"), offers("accepted"), offers("withdrawn")) == (1, 1, 2)
    assert offers("no_answer") == 1
    assert value(metrics, "callresilience_offers_sent_total") == 5
    assert value(metrics, "callresilience_calls_total", outcome="answered") == 1
    assert value(metrics, "callresilience_calls_total", outcome="abandoned") == 2

    def created(table: str) -> float:
        return value(metrics, "callresilience_records_created_total", table=table)

    assert (created("sn_openframe_phone_log"), created("interaction")) == (1, 2)
    assert created("awa_work_item") == 1  # c3's missed offer
    assert value(metrics, "callresilience_records_updated_total", table="interaction") >= 2
    posts = value(
        metrics,
        "callresilience_servicenow_request_duration_seconds_count",
        method="POST",
        table="sn_openframe_phone_log",
        code="201",
    )
    assert posts == 1
    assert value(metrics, "callresilience_journal_depth") == 0
    assert value(metrics, "callresilience_journal_entries", state="done") > 0
    assert value(metrics, "callresilience_breaker_state", endpoint=ENDPOINT, state="closed") == 1
    assert value(metrics, "callresilience_agents", state="idle") == 2


async def test_an_outage_shows_in_the_gauges() -> None:
    """While the instance refuses connections: breaker open, a backlog with an age, errors."""
    async with metered_rig() as (rig, metrics):
        rig.fake.faults.add(RefuseConnections())
        await rig.engine.call_arrived(call(rig, "c1"))
        await rig.engine.accept("c1", "ada")
        await rig.advance(30)
        await metrics.refresh(rig.engine)
        counts = await rig.engine.journal.counts()
        assert value(metrics, "callresilience_breaker_state", endpoint=ENDPOINT, state="open") == 1
        depth = counts[EntryState.PENDING] + counts[EntryState.IN_FLIGHT]
        assert value(metrics, "callresilience_journal_depth") == depth > 0
        assert value(metrics, "callresilience_journal_oldest_pending_age_seconds") >= 29
        assert value(metrics, "callresilience_calls_active") == 1
        failed = value(
            metrics,
            "callresilience_servicenow_request_duration_seconds_count",
            method="POST",
            table="sn_openframe_phone_log",
            code="error",
        )
        assert failed >= 1


# -- polled gauges ---------------------------------------------------------------------------


def status(agents: dict[str, int], oldest: float | None = None) -> dict[str, Any]:
    """A minimal status snapshot, as Engine.status returns."""
    return {
        "journal": {
            "depth": 0,
            "pending": 0,
            "in_flight": 0,
            "done": 0,
            "dead": 2,
            "oldest_pending_age_s": oldest,
        },
        "calls": {"waiting": 3, "active": 1},
        "agents": agents,
        "servicenow": {"breakers": {ENDPOINT: "half_open"}},
        "modes": {"default": "normal"},
    }


def test_update_sets_the_gauges_and_zeroes_agent_states_that_left() -> None:
    """An agent state no longer reported drops to 0 instead of keeping its old count."""
    metrics = Metrics()
    metrics.update(status({"idle": 2, "on_call": 1}, oldest=12.5))
    assert value(metrics, "callresilience_journal_oldest_pending_age_seconds") == 12.5
    assert value(metrics, "callresilience_journal_dead_entries") == 2
    assert value(metrics, "callresilience_calls_waiting") == 3
    assert value(metrics, "callresilience_breaker_state", endpoint=ENDPOINT, state="half_open") == 1
    assert value(metrics, "callresilience_mode", scope="default", mode="normal") == 1
    metrics.update(status({"idle": 3}))
    assert value(metrics, "callresilience_agents", state="on_call") == 0
    assert value(metrics, "callresilience_agents", state="idle") == 3
    assert value(metrics, "callresilience_journal_oldest_pending_age_seconds") == 0


class _Engine:
    """Enough of an engine for `poll`: a status() that fails once, then counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def status(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("status failed")
        return status({"idle": self.calls})


async def test_poll_refreshes_on_the_clock_and_survives_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """poll refreshes every interval on the given clock; a failed refresh is logged."""
    metrics, engine, clock = Metrics(), _Engine(), ManualClock()
    task = asyncio.create_task(metrics.poll(engine, 15.0, clock=clock))  # type: ignore[arg-type]
    for _ in range(3):
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(15.0)
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert engine.calls == 4
    assert value(metrics, "callresilience_agents", state="idle") == 4
    assert "refreshing the metrics from engine.status() failed" in caplog.text
    assert caplog.records[0].name == "callresilience.metrics"
    assert caplog.records[0].levelno == logging.ERROR


async def test_poll_without_a_clock_uses_the_event_loop() -> None:
    """Without a clock, poll waits on asyncio.sleep."""
    metrics, engine = Metrics(), _Engine()
    task = asyncio.create_task(metrics.poll(engine, 0.0))  # type: ignore[arg-type]
    while engine.calls < 3:
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# -- request latency -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "table"),
    [
        ("GET", "/api/now/table/sys_user", "sys_user"),
        ("PATCH", "/api/now/v2/table/interaction/" + "a" * 32, "interaction"),
        ("GET", "/api/now/v1/table/", "other"),
        ("POST", "/oauth_token.do", "oauth"),
        ("GET", "/stats.do", "other"),
    ],
)
async def test_requests_are_timed_by_method_table_and_code(
    method: str, path: str, table: str
) -> None:
    """The time on the clock from sending to the answer is observed, labelled."""
    metrics, clock = Metrics(), ManualClock()

    def handle(request: httpx.Request) -> httpx.Response:
        clock.advance(0.3)
        return httpx.Response(200, json={"result": []})

    transport = metrics.instrument(httpx.MockTransport(handle), clock=clock)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.request(method, ENDPOINT + path)
    labels = {"method": method, "table": table, "code": "200"}
    name = "callresilience_servicenow_request_duration_seconds"
    assert value(metrics, f"{name}_count", **labels) == 1
    assert value(metrics, f"{name}_sum", **labels) == pytest.approx(0.3)
    assert value(metrics, f"{name}_bucket", le="0.5", **labels) == 1
    assert value(metrics, f"{name}_bucket", le="0.25", **labels) == 0


async def test_a_request_without_an_answer_is_timed_as_error() -> None:
    """A transport error is observed with code 'error' and raised on."""
    metrics = Metrics()

    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = metrics.instrument(httpx.MockTransport(handle))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(ENDPOINT + "/api/now/table/interaction")
    name = "callresilience_servicenow_request_duration_seconds_count"
    assert value(metrics, name, method="GET", table="interaction", code="error") == 1


async def test_instrument_wraps_the_default_transport() -> None:
    """With no transport given, httpx's own is wrapped (and closed with the wrapper)."""
    transport = Metrics().instrument()
    assert isinstance(transport._inner, httpx.AsyncHTTPTransport)
    await transport.aclose()
