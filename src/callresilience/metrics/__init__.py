"""Prometheus metrics for an engine (needs the `metrics` extra: ``prometheus-client``).

::

    metrics = Metrics()                                   # a fresh CollectorRegistry
    engine = Engine(config, channel, transport=metrics.instrument())
    metrics.attach(engine)                                # counters from the engine's events
    await metrics.refresh(engine)                         # gauges from engine.status()

Counters and the breaker and mode gauges follow the engine's events as they happen; the journal
gauges, the calls waiting and the agents by state are read from `Engine.status()` by
`refresh` (call it before each scrape, or every few seconds with `poll`). ServiceNow request
latency is measured by a transport wrapper (`instrument`) given to the engine, so the client
needs no hook of its own. See ``docs/operations.md`` for every name and label.
"""

from __future__ import annotations

from ._metrics import LATENCY_BUCKETS, Metrics, TimedTransport

__all__ = ["LATENCY_BUCKETS", "Metrics", "TimedTransport"]
