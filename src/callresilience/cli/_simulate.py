"""`callresilience simulate`: a contact center riding through a ServiceNow outage, live.

Only the options and the wiring live here; the simulation is `callresilience.sim`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["register"]

_FAULT_HELP = {
    "outage": "refuse every connection for DURATION from START, e.g. 20s@10s (repeatable)",
    "hibernate": "answer with the hibernation page for DURATION@START (repeatable)",
    "latency": "add latency (exponential jitter), e.g. 300ms or 2s:30s@60s (repeatable)",
    "rate-limit": "limit the Table API, e.g. 5/s or 3000/h, optionally :DURATION@START",
    "ambiguous": "commit this share of creates but lose the answer, e.g. 0.2 or 0.3:40s@10s",
}


def _typed(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises `ScenarioError` (a ValueError)."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _seconds(text: str) -> float:
    from ..sim import parse_seconds  # noqa: PLC0415 (keep `callresilience --help` light)

    return parse_seconds(text)


def _optional_seconds(text: str) -> float | None:
    return None if text.strip().lower() in {"none", "off"} else _seconds(text)


def _distribution(text: str) -> Any:
    from ..sim import parse_distribution  # noqa: PLC0415

    return parse_distribution(text)


def _fault(kind: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        from ..sim import parse_fault  # noqa: PLC0415

        return parse_fault(kind, text)

    return parse


def _number(low: float, high: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not (value >= low and (high is None or value <= high)):
            bound = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
            raise ValueError(f"{text!r}: give a number {bound}")
        return value

    return parse


def _per_request(text: str) -> int:
    from ..sim._scenario import check_per_request  # noqa: PLC0415

    try:
        value: object = int(text)
    except ValueError:
        value = text
    return check_per_request(value)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `simulate` subcommand."""
    parser = commands.add_parser(
        "simulate",
        help="watch a simulated contact center ride through a ServiceNow outage",
        description=(
            "Run a contact center against the FakeServiceNow over real HTTP on 127.0.0.1: an "
            "engine with a SQLite journal, scripted agents, callers arriving at a rate, and a "
            "fault schedule. With no options it shows, in about 40 seconds, calls being "
            "answered through a 40 s outage, the mode switching, and the journal draining on "
            "recovery. At the end the fake's tables are checked against the calls: the exit "
            "status is 1 if anything was lost or duplicated. Durations are virtual seconds."
        ),
    )
    run = parser.add_argument_group("the run")
    run.add_argument("--seed", type=int, default=1, help="seed of everything random (1)")
    run.add_argument(
        "--speed",
        type=_typed(_number(0.1, 1000)),
        default=4.0,
        help="virtual seconds per real second (4)",
    )
    run.add_argument(
        "--duration", type=_typed(_seconds), default=120.0, help="how long calls arrive (120s)"
    )
    run.add_argument(
        "--rate", type=_typed(_number(0.001)), default=0.35, help="calls per second (0.35)"
    )
    run.add_argument("--journal", type=Path, help="the SQLite journal (a new file; default: temp)")
    run.add_argument(
        "--per-request",
        type=_typed(_per_request),
        default=1,
        metavar="N",
        help=(
            "journal entries the drainer sends in one HTTP request, 1 to 100 (1): above 1 they "
            "go through ServiceNow's Batch API, and the summary is followed by a line saying "
            "how many Batch API requests carried how many writes"
        ),
    )
    center = parser.add_argument_group("the contact center")
    center.add_argument("--agents", type=int, default=16, help="how many agents (16)")
    center.add_argument(
        "--accept", type=_typed(_number(0, 1)), default=0.8, help="chance an agent accepts (0.8)"
    )
    center.add_argument(
        "--reject", type=_typed(_number(0, 1)), default=0.1, help="chance an agent rejects (0.1)"
    )
    center.add_argument(
        "--ring",
        type=_typed(_distribution),
        help="how long agents let it ring before answering (1s-5s)",
    )
    center.add_argument(
        "--talk",
        type=_typed(_distribution),
        help="talk time: 20s, 10s-40s or exp:20s (default: 5 s + exp:15s)",
    )
    center.add_argument("--wrap-up", type=_typed(_distribution), help="after-call work (2s-8s)")
    center.add_argument(
        "--patience",
        type=_typed(_seconds),
        default=60.0,
        help="mean time a waiting caller holds on (60s)",
    )
    center.add_argument(
        "--offer-timeout", type=_typed(_seconds), default=12.0, help="ring time (12s)"
    )
    center.add_argument(
        "--max-wait",
        type=_typed(_optional_seconds),
        default=90.0,
        help="overflow a call after waiting this long, or none (90s)",
    )
    center.add_argument(
        "--leave-after",
        type=_typed(_seconds),
        default=20.0,
        help="healthy time before a scope leaves resiliency mode (20s; the engine's is 60s)",
    )
    faults = parser.add_argument_group(
        "faults", "Without any of these, the run gets one outage: --outage 40s@30s."
    )
    for kind, text in _FAULT_HELP.items():
        faults.add_argument(
            f"--{kind}",
            dest="faults",
            action="append",
            type=_typed(_fault(kind)),
            metavar="SPEC",
            help=text,
        )
    faults.add_argument(
        "--no-faults", action="store_true", help="run with a healthy instance throughout"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="PATH", help="write the summary as JSON")
    out.add_argument("--report", type=Path, metavar="PATH", help="write an HTML report")
    out.add_argument(
        "--plain", action="store_true", help="plain lines even on a terminal (no dashboard)"
    )
    parser.set_defaults(handler=_run)


def _scenario(args: argparse.Namespace) -> Any:
    import attrs  # noqa: PLC0415

    from ..sim import Scenario, ScenarioError  # noqa: PLC0415
    from ..sim._scenario import DEFAULT_BEHAVIOUR  # noqa: PLC0415

    if args.no_faults and args.faults:
        raise ScenarioError("--no-faults: give it alone, without fault options")
    if args.accept + args.reject > 1:
        raise ScenarioError("--accept plus --reject: give at most 1 in total")
    changes = {"accept": args.accept, "reject": args.reject}
    for name in ("ring", "talk", "wrap_up"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.journal is not None and args.journal.exists():
        raise ScenarioError(
            f"--journal: {args.journal} exists; give a new file (the run's call ids would "
            "meet an earlier run's entries)"
        )
    options: dict[str, Any] = {}
    if args.faults or args.no_faults:  # else the scenario's default outage
        options["faults"] = tuple(args.faults or ())
    return Scenario(
        seed=args.seed,
        speed=args.speed,
        duration=args.duration,
        rate=args.rate,
        agents=args.agents,
        behaviour=attrs.evolve(DEFAULT_BEHAVIOUR, **changes),
        patience=args.patience,
        offer_timeout=args.offer_timeout,
        max_wait=args.max_wait,
        leave_after=args.leave_after,
        journal=args.journal,
        per_request=args.per_request,
        **options,
    )


def _run(args: argparse.Namespace, *, stdout: IO[str] | None = None) -> int:
    from ..sim import (  # noqa: PLC0415
        PlainDisplay,
        RichDisplay,
        ScenarioError,
        exit_status,
        render_report,
        scenario_lines,
        summary_text,
    )

    out = stdout or sys.stdout
    try:
        scenario = _scenario(args)
    except (ScenarioError, ValueError) as error:
        print(f"callresilience simulate: error: {error}", file=sys.stderr)
        return 2
    live = not args.plain and out.isatty()
    display: Any
    if live:
        try:
            display = RichDisplay(speed=scenario.speed)
        except RuntimeError as error:  # rich is missing
            print(f"callresilience simulate: error: {error}", file=sys.stderr)
            return 1
    else:
        display = PlainDisplay(out)
    from ..sim import run  # noqa: PLC0415

    try:
        result = asyncio.run(run(scenario, display))
    except RuntimeError as error:  # uvicorn is missing
        print(f"callresilience simulate: error: {error}", file=sys.stderr)
        return 1
    status = exit_status(result.summary)
    verdict = "OK: nothing lost, nothing duplicated" if status == 0 else "FAILED"
    title = (
        f"Summary: {verdict}\n{result.virtual_seconds:.0f} s simulated in "
        f"{result.wall_seconds:.1f} s of real time"
    )
    if live:
        from ..sim._display import print_summary_rich  # noqa: PLC0415

        print_summary_rich(display.console, result.summary, title)
    else:
        print(f"\n{title}\n{summary_text(result.summary)}", file=out)
    batched = result.batch.describe() if scenario.per_request > 1 else None
    if batched is not None:
        if live:
            display.console.print(batched, highlight=False)
        else:
            print(batched, file=out)
    for problem in result.check.problems[:20]:
        print(f"  problem: {problem}", file=out)
    if len(result.check.problems) > 20:
        print(f"  ... and {len(result.check.problems) - 20} more", file=out)
    if args.json is not None:
        args.json.write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
        print(f"summary written to {args.json}", file=out)
    if args.report is not None:
        page = render_report(
            title="callresilience simulate",
            lines=scenario_lines(scenario),
            summary=result.summary,
            samples=result.samples,
            notes=result.notes,
            problems=result.check.problems,
            details=() if batched is None else (batched,),
            footer=(
                f"{result.virtual_seconds:.0f} s simulated in {result.wall_seconds:.1f} s of "
                f"real time; seed {scenario.seed}; {verdict}"
            ),
        )
        args.report.write_text(page, encoding="utf-8")
        print(f"report written to {args.report}", file=out)
    return status
