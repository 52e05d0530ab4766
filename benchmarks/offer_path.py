"""The offer path: how long a caller waits for an agent, whatever the instance does.

The same calls, arriving at a steady `RATE` per second, and the same `AGENTS` ready agents, in
four instance conditions: healthy, slow (every request answered after 2 s), black-holed
(every request accepted, never answered) and rate-limited (`RATE_LIMIT` Table API requests per
second, then 429). The FakeServiceNow runs in its own process over loopback HTTP
(``benchmarks._fake_conditions``); for pysnc, which accepts only ``https://`` URLs, behind a
TLS-terminating proxy in that process with a throwaway certificate (``benchmarks._tls``).

Three contenders (``benchmarks._contenders``): callresilience's engine, and two "create
first" adapters written the way integrators do today, which create the Interaction and then
offer, one with httpx and tenacity, one with pysnc.

Offer latency is the time from the call's arrival to the moment the contender hands the
offer to its agent channel. A call not offered within `LOST_AFTER` (8 s, Amazon Connect's
longest Lambda run in a contact flow) is lost, and so is a call the contender gave up on; a
lost call counts as 8 s in the percentiles, so a p99 of 8,000 ms means at least 1 % lost.
The first `WARM_UP` calls of each cell are not measured; then a full run measures 1,000 calls
per cell (20 s of arrivals), a quick one 100 (2 s): the create-first contenders' losses grow
with the length of the episode, so a quick run shows fewer of them.

The cells run one at a time, except the create-first contenders' three faulted conditions
in quick mode, which run side by side (each against its own fake): their figures are seconds
spent waiting on the instance, and running them in turn would add 8 s or more per cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from . import _chart
from ._common import table
from ._contenders import CONTENDERS, NEEDS_TLS, Instance
from ._fake_conditions import CONDITIONS

RATE = 50.0  # calls per second
AGENTS = 100  # enough that one is always free: RATE * (RING + HOLD) = 12.5 busy on average
RATE_LIMIT = 25  # Table API requests per second in the rate-limited condition
LOST_AFTER = 8.0  # seconds
WARM_UP = 10
TARGET_RATIO = 1.1
ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "docs" / "perf"  # offer_path.svg (full run), offer_path-quick.svg


@contextlib.asynccontextmanager
async def _fake(condition: str, *, tls: bool) -> AsyncIterator[Instance]:
    """Serve the fake in `condition` in its own process; stop it on the way out."""
    args = ["--rate-limit", str(RATE_LIMIT), *(["--tls"] if tls else [])]
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._fake_conditions",
        condition,
        *args,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert server.stdout is not None
    try:
        url = (await server.stdout.readline()).decode().strip()
        cert = (await server.stdout.readline()).decode().strip() if tls else ""
        if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
            raise RuntimeError(f"the fake did not start (exit status {await server.wait()})")
        yield Instance(url, Path(cert) if cert else None)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        await server.communicate()


def _percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(waits: list[float | None], failed: int) -> dict[str, Any]:
    """p50, p99 (ms) and lost of one cell; None is a call not offered within `LOST_AFTER`.

    `failed` is how many of the lost calls the contender gave up on within `LOST_AFTER`.
    """
    capped = sorted(LOST_AFTER if w is None or w > LOST_AFTER else w for w in waits)
    return {
        "p50_ms": round(_percentile(capped, 0.50) * 1e3, 2),
        "p99_ms": round(_percentile(capped, 0.99) * 1e3, 2),
        "lost": sum(1 for w in waits if w is None or w > LOST_AFTER),
        "gave_up": failed,
        "calls": len(waits),
    }


async def cell(contender: str, condition: str, calls: int) -> dict[str, Any]:
    """Run `calls` measured calls (after `WARM_UP`) through `contender` in `condition`."""
    arrived: dict[str, float] = {}
    offered: dict[str, float] = {}
    failed: dict[str, float] = {}

    def on_offered(call_id: str) -> None:
        offered.setdefault(call_id, time.perf_counter())

    def on_failed(call_id: str) -> None:
        failed.setdefault(call_id, time.perf_counter())

    total = WARM_UP + calls
    async with (
        _fake(condition, tls=contender in NEEDS_TLS) as instance,
        CONTENDERS[contender](instance, AGENTS, on_offered, on_failed) as arrive,
    ):
        start = time.perf_counter()
        for n in range(total):
            delay = start + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            call_id = f"call-{n:05d}"
            arrived[call_id] = time.perf_counter()
            await arrive(call_id)
        give_up = time.perf_counter() + LOST_AFTER
        while len(offered) + len(failed) < total and time.perf_counter() < give_up:
            await asyncio.sleep(0.02)
    measured = list(arrived)[WARM_UP:]
    waits = [offered[c] - arrived[c] if c in offered else None for c in measured]
    gave_up = sum(1 for c in measured if c in failed and failed[c] - arrived[c] <= LOST_AFTER)
    return summarize(waits, gave_up)


async def _run(calls: int, side_by_side: bool) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in CONTENDERS}
    waiting = [
        (name, condition)
        for name in CONTENDERS
        for condition in CONDITIONS
        if name != "callresilience" and condition != "healthy"
    ]
    alone = [(n, c) for n in CONTENDERS for c in CONDITIONS if (n, c) not in waiting]
    for name, condition in alone if side_by_side else alone + waiting:
        results[name][condition] = await cell(name, condition, calls)
    if side_by_side:
        figures = await asyncio.gather(*(cell(n, c, calls) for n, c in waiting))
        for (name, condition), figure in zip(waiting, figures, strict=True):
            results[name][condition] = figure
    return {name: {c: results[name][c] for c in CONDITIONS} for name in CONTENDERS}


def run(*, quick: bool) -> dict[str, Any]:
    """Run the offer-path suite, print its table and draw its chart into docs/perf/.

    A full run draws the chart the documentation shows; a quick one draws its own beside it.
    """
    calls = 100 if quick else 1_000
    started = time.perf_counter()
    cells = asyncio.run(_run(calls, side_by_side=quick))
    ours = cells["callresilience"]
    ratio = round(ours["blackholed"]["p99_ms"] / ours["healthy"]["p99_ms"], 2)
    results: dict[str, Any] = {
        **ours,
        "ratio_p99_blackholed_vs_healthy": ratio,
        "create_first_httpx": cells["create_first_httpx"],
        "create_first_pysnc": cells["create_first_pysnc"],
        "calls_per_cell": calls,
        "arrival_rate_per_s": RATE,
        "agents": AGENTS,
        "rate_limit_per_s": RATE_LIMIT,
        "lost_after_s": LOST_AFTER,
        "seconds": round(time.perf_counter() - started, 1),
    }
    rows: list[tuple[str, str, str]] = []
    for name, conditions in cells.items():
        for condition, figure in conditions.items():
            aim = "lost must be 0" if name == "callresilience" else ""
            if figure["gave_up"]:
                aim = f"{figure['gave_up']} gave up before 8 s"
            rows.append(
                (
                    f"{name}, {condition}",
                    f"{figure['p50_ms']:.1f}/{figure['p99_ms']:.1f}/{figure['lost']}",
                    aim,
                )
            )
    rows.append(("callresilience p99 black-holed/healthy", f"{ratio}", f"aim <= {TARGET_RATIO}"))
    table(
        f"offer path: {calls} calls at {RATE:g}/s per cell, {AGENTS} agents, over loopback; "
        "offer ms p50/p99/lost (lost: not offered within 8 s)",
        rows,
    )
    chart = CHARTS / ("offer_path-quick.svg" if quick else "offer_path.svg")
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart.write_text(_chart.offer_latency_svg(cells, lost_after_ms=LOST_AFTER * 1e3))
    print(f"\nchart: {chart.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    json.dump(run(quick="--quick" in sys.argv), sys.stdout, indent=2)
