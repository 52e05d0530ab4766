"""``python -m benchmarks [SUITE ...] [--quick] [--json PATH]``.

Runs the chosen suites (all by default), prints each one's table, then a summary of the
figures every run reports, and writes them as JSON. The JSON's top-level keys:

- ``offer_path``, ``lifecycle``, ``drain``, ``client``, ``memory``: the figures asked of every
  run (``lifecycle`` comes from the engine suite; each carries its suite's detail beside them);
- ``machine``: the interpreter, the CPU and its cores;
- ``engine``, ``journal``, ``router``: those suites' other figures;
- ``run``: when, how (quick or full), how long each suite took and the load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from . import _common, client, drain, engine, journal, memory, offer_path, router

SUITES: dict[str, Callable[..., dict[str, Any]]] = {
    "offer_path": offer_path.run,
    "engine": engine.run,
    "drain": drain.run,
    "journal": journal.run,
    "client": client.run,
    "memory": memory.run,
    "router": router.run,
}


def _load() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def figures(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Lay the suites' results out under the top-level keys the figures are known by."""
    out: dict[str, Any] = {}
    if "offer_path" in results:
        out["offer_path"] = results["offer_path"]
    if "engine" in results:
        out["lifecycle"] = results["engine"]["lifecycle"]
    for name in ("drain", "client", "memory"):
        if name in results:
            out[name] = results[name]
    out["machine"] = _common.machine()
    if "engine" in results:
        out["engine"] = {k: v for k, v in results["engine"].items() if k != "lifecycle"}
    for name in ("journal", "router"):
        if name in results:
            out[name] = results[name]
    return out


def _summary(out: dict[str, Any]) -> None:
    """Print the figures every run reports, in one table."""
    rows: list[tuple[str, str, str]] = []
    if "offer_path" in out:
        cells = out["offer_path"]
        for contender in ("callresilience", "create_first_httpx", "create_first_pysnc"):
            by_condition = cells if contender == "callresilience" else cells[contender]
            for condition in ("healthy", "slow", "blackholed", "rate_limited"):
                cell = by_condition[condition]
                rows.append(
                    (
                        f"offer_path {contender}, {condition}",
                        f"{cell['p50_ms']:.1f}/{cell['p99_ms']:.1f}/{cell['lost']}",
                        "ms p50/p99, lost",
                    )
                )
        ratio = cells["ratio_p99_blackholed_vs_healthy"]
        rows.append(("offer_path ratio p99 black-holed/healthy", f"{ratio}", "callresilience"))
    if "lifecycle" in out:
        cycle = out["lifecycle"]
        pinned = ", one CPU" if cycle.get("one_cpu") else ""
        for name, variant in engine.VARIANTS.items():
            rows.append(
                (
                    f"lifecycle calls/s, {variant.label}",
                    f"{cycle[f'calls_per_s_{name}']:,}/s",
                    f"median of {cycle['runs']}{pinned}; CPU {cycle[f'cpu_us_per_call_{name}']} "
                    "us per call",
                )
            )
    if "drain" in out:
        d = out["drain"]
        rows += [
            ("drain achieved/limit", f"{d['achieved_per_s']}/{d['rate_limit_per_s']}", "per s"),
            ("drain efficiency", f"{d['efficiency']}", ""),
            ("drain requests/429s/duplicates", f"{d['requests']}/{d['http_429']}/"
             f"{d['duplicates']}", ""),
        ]  # fmt: skip
    if "client" in out:
        c = out["client"]
        note = f"c={c['concurrency']}, median of {c['repetitions']}"
        for key, label in (
            ("creates_per_s", f"client creates/s ({c['default_transport']})"),
            ("pysnc_creates_per_s", "pysnc creates/s (threads, over TLS)"),
            ("httpx_raw_creates_per_s", "raw httpx creates/s"),
            ("aiohttp_raw_creates_per_s", "raw aiohttp creates/s"),
        ):
            rows.append((label, f"{c[key]:,}/s", note))
    if "memory" in out:
        m = out["memory"]
        rows += [
            ("bytes per queued call", f"{m['bytes_per_queued_call']:,} B", "tracemalloc"),
            ("bytes per pending entry", f"{m['bytes_per_pending_entry']:,} B",
             "MemoryJournal, tracemalloc"),
        ]  # fmt: skip
    if rows:
        _common.table("summary", rows)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites (all by default) and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "suite", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.suite) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    chosen = [name for name in SUITES if not args.suite or name in args.suite]
    described = _common.machine()
    load_start = _load()
    print(
        f"machine: {described['implementation']} {described['python']}, {described['cpu']}, "
        f"{described['cores']} cores; load average {load_start[0]} {load_start[1]} "
        f"{load_start[2]}; {'quick' if args.quick else 'full'} run"
    )
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for name in chosen:
        began = time.perf_counter()
        results[name] = SUITES[name](quick=args.quick)
        seconds[name] = round(time.perf_counter() - began, 1)
    out = figures(results)
    out["run"] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "suites": chosen,
        "seconds_by_suite": seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_start": load_start,
        "load_average_end": _load(),
    }
    _summary(out)
    print(
        f"\n{out['run']['seconds']} s in all ("
        + ", ".join(f"{name} {s} s" for name, s in seconds.items())
        + f"); load average at the end {' '.join(map(str, out['run']['load_average_end']))}"
    )
    _common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
