"""How a run shows itself: a live rich dashboard on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from ._timeline import Note, Sample

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = [
    "PlainDisplay",
    "QuietDisplay",
    "RichDisplay",
    "format_sample",
    "summary_rows",
    "summary_text",
]

_AGENT_STATES = ("idle", "reserved", "on_call", "wrap_up", "not_ready")


def _missing_rich() -> RuntimeError:
    return RuntimeError(
        "the live dashboard needs rich; install it with: pip install 'callresilience[sim]' "
        "(or pass --plain)"
    )


def instance_state(sample: Sample) -> str:
    """``healthy``, or the faults in force."""
    return "healthy" if not sample.faults else "DOWN: " + ", ".join(sample.faults)


def format_sample(sample: Sample) -> str:
    """One plain line for a sample."""
    agents = " ".join(f"{k} {sample.agents.get(k, 0)}" for k in _AGENT_STATES)
    modes = " ".join(f"{scope} {mode}" for scope, mode in sample.modes.items())
    return (
        f"[{sample.t:6.1f}s] calls {sample.arrived} (waiting {sample.waiting}, ringing "
        f"{sample.ringing}, on call {sample.connected}) | offers {sample.offers}, redirects "
        f"{sample.redirects} | agents: {agents} | instance {instance_state(sample)}, breaker "
        f"{sample.breaker} | {modes} | journal {sample.depth} | records {sample.records}"
    )


def _latency(value: Mapping[str, Any]) -> str:
    if value.get("p50") is None:
        return "no calls"
    return f"p50 {value['p50']:g}  p99 {value['p99']:g}  max {value['max']:g}"


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary as (label, value) rows."""
    rows: list[tuple[str, str]] = []
    for key, value in summary.items():
        if key == "offer_latency_ms":
            for health in ("healthy", "outage"):
                rows.append((f"offer latency ms, {health}", _latency(value[health])))
        elif key == "drain_seconds":
            rows.append((key, "did not drain" if value is None else f"{value:g}"))
        else:
            rows.append((key, str(value)))
    return rows


def summary_text(summary: Mapping[str, Any]) -> str:
    """The summary as an aligned plain table."""
    rows = summary_rows(summary)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


class QuietDisplay:
    """Shows nothing."""

    def begin(self, lines: list[str]) -> None:
        """Nothing."""

    def update(self, sample: Sample) -> None:
        """Nothing."""

    def note(self, note: Note) -> None:
        """Nothing."""

    def end(self) -> None:
        """Nothing."""


class PlainDisplay:
    """Plain lines: the notable moments as they happen, and a status line every `every` s."""

    def __init__(self, stream: IO[str] | None = None, *, every: float = 10.0) -> None:
        self._stream = stream or sys.stdout
        self._every = every
        self._next = 0.0
        self._last: Sample | None = None

    def _print(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def begin(self, lines: list[str]) -> None:
        """Print what the run will do."""
        for line in lines:
            self._print(line)

    def update(self, sample: Sample) -> None:
        """Print a status line when one is due."""
        self._last = sample
        if sample.t >= self._next:
            self._print(format_sample(sample))
            self._next = sample.t + self._every

    def note(self, note: Note) -> None:
        """Print the moment."""
        self._print(f"[{note.t:6.1f}s] {note.text}")

    def end(self) -> None:
        """Print the last status line."""
        if self._last is not None:
            self._print(format_sample(self._last))


class RichDisplay:
    """A live dashboard on the terminal (needs rich)."""

    def __init__(self, *, console: Console | None = None, speed: float = 1.0) -> None:
        try:
            from rich.console import Console  # noqa: PLC0415
        except ImportError as error:  # pragma: no cover (rich is in the dev extra)
            raise _missing_rich() from error
        self._console = console or Console()
        self._speed = speed
        self._lines: list[str] = []
        self._notes: deque[Note] = deque(maxlen=8)
        self._sample: Sample | None = None
        self._live: Live | None = None

    @property
    def console(self) -> Console:
        """Where the dashboard is drawn."""
        return self._console

    def begin(self, lines: list[str]) -> None:
        """Start the live view."""
        from rich.live import Live  # noqa: PLC0415

        self._lines = lines
        self._live = Live(
            self._render(), console=self._console, auto_refresh=False, transient=False
        )
        self._live.start()

    def update(self, sample: Sample) -> None:
        """Redraw with a new sample."""
        self._sample = sample
        self._refresh()

    def note(self, note: Note) -> None:
        """Add a line to the recent moments."""
        self._notes.append(note)
        self._refresh()

    def end(self) -> None:
        """Stop the live view, leaving its last picture on screen."""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def _render(self) -> RenderableType:
        from rich.console import Group  # noqa: PLC0415
        from rich.panel import Panel  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        s = self._sample
        header = Text("callresilience simulate", style="bold")
        if s is not None:
            header.append(f"   t = {s.t:6.1f} s (x{self._speed:g})   {s.phase}", style="cyan")
        intro = Text("\n".join(self._lines), style="dim")
        if s is None:
            return Group(header, intro)

        def box(title: str, rows: list[tuple[str, str, str]]) -> Panel:
            table = Table.grid(padding=(0, 1))
            table.add_column(style="dim")
            table.add_column(justify="right")
            for label, value, style in rows:
                table.add_row(label, Text(value, style=style))
            return Panel(table, title=title, title_align="left")

        down = bool(s.faults)
        calls = box(
            "Calls",
            [
                ("arrived", str(s.arrived), ""),
                ("waiting", str(s.waiting), "yellow" if s.waiting else ""),
                ("ringing", str(s.ringing), ""),
                ("on call", str(s.connected), "green"),
                ("answered", str(s.answered), ""),
                ("abandoned", str(s.abandoned), ""),
                ("overflowed", str(s.overflowed), ""),
            ],
        )
        agents = box(
            "Agents",
            [(state.replace("_", " "), str(s.agents.get(state, 0)), "") for state in _AGENT_STATES],
        )
        offers = box(
            "Offers",
            [
                ("offers", str(s.offers), ""),
                ("redirects", str(s.redirects), ""),
                ("rejected", str(s.rejected), ""),
                ("rang out", str(s.timed_out), ""),
            ],
        )
        breaker_style = {"closed": "green", "open": "red"}.get(s.breaker, "yellow")
        instance = box(
            "ServiceNow",
            [
                ("instance", instance_state(s), "bold red" if down else "green"),
                ("breaker", s.breaker, breaker_style),
                *(
                    (scope, mode, "bold magenta" if mode == "resiliency" else "green")
                    for scope, mode in s.modes.items()
                ),
            ],
        )
        journal = box(
            "Journal and records",
            [
                ("journal depth", str(s.depth), "yellow" if s.depth else ""),
                ("dead", str(s.dead), "red" if s.dead else ""),
                ("phone logs", str(s.phone_logs), ""),
                ("interactions", str(s.interactions), ""),
                ("work items", str(s.work_items), ""),
            ],
        )
        grid = Table.grid(expand=True)
        for _ in range(3):
            grid.add_column(ratio=1)
        grid.add_row(calls, agents, offers)
        grid.add_row(instance, journal, Text(""))
        recent = Text("\n".join(f"[{n.t:6.1f}s] {n.text}" for n in self._notes) or " ")
        return Group(header, intro, grid, Panel(recent, title="Recent", title_align="left"))


def print_summary_rich(console: Console, summary: Mapping[str, Any], title: str) -> None:
    """Print the summary as a rich table."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for label, value in summary_rows(summary):
        bad = label in {"lost", "duplicates"} and value != "0"
        table.add_row(label, f"[bold red]{value}[/]" if bad else value)
    console.print(table)
