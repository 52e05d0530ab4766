"""A self-contained HTML report: a timeline drawn as inline SVG, and the summary. Pure.

No scripts, no fonts, no stylesheets from elsewhere: the page can be mailed or archived.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ._display import summary_rows
from ._timeline import Note, Sample

__all__ = ["render_report", "timeline_svg"]

_WIDTH: Final = 960
_LEFT: Final = 70
_RIGHT: Final = 20
_BAND: Final = 18
_CHART: Final = 150

_COLOURS: Final = {
    "offers": "#1f77b4",
    "records": "#2ca02c",
    "depth": "#ff7f0e",
    "down": "#d62728",
    "open": "#d62728",
    "half_open": "#f0ad4e",
    "resiliency": "#9467bd",
}


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _bands(
    samples: Sequence[Sample], x: Callable[[float], float], y: float, key: Callable[[Sample], str]
) -> list[str]:
    """Coloured stretches where `key(sample)` names a colour."""
    out: list[str] = []
    start: Sample | None = None
    state = ""
    for sample, following in zip(samples, [*samples[1:], None], strict=True):
        value = key(sample)
        if value != state:
            start, state = sample, value
        ends = following is None or key(following) != value
        if ends and state in _COLOURS and start is not None:
            right = following.t if following is not None else sample.t
            width = max(1.0, x(right) - x(start.t))
            out.append(
                f'<rect x="{x(start.t):.1f}" y="{y:.1f}" width="{width:.1f}" height="{_BAND - 4}" '
                f'fill="{_COLOURS[state]}"><title>{_esc(state)} {start.t:g}s-{right:g}s</title>'
                "</rect>"
            )
    return out


def _line(
    samples: Sequence[Sample],
    x: Callable[[float], float],
    y: Callable[[float], float],
    value: Callable[[Sample], float],
    colour: str,
) -> str:
    points = " ".join(f"{x(s.t):.1f},{y(value(s)):.1f}" for s in samples)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'


def timeline_svg(samples: Sequence[Sample], notes: Sequence[Note] = ()) -> str:
    """The run's timeline: instance, breaker and mode bands; offers, records, journal depth."""
    if not samples:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    end = max(samples[-1].t, 1.0)
    plot = _WIDTH - _LEFT - _RIGHT

    def x(t: float) -> float:
        return _LEFT + plot * t / end

    parts: list[str] = []
    top = 10.0
    for label, key in (
        ("instance", lambda s: "down" if s.faults else ""),
        ("breaker", lambda s: s.breaker),
        ("mode", lambda s: "resiliency" if s.resiliency else ""),
    ):
        parts.append(f'<text x="{_LEFT - 6}" y="{top + 11}" text-anchor="end">{label}</text>')
        parts.append(
            f'<rect x="{_LEFT}" y="{top}" width="{plot}" height="{_BAND - 4}" fill="#eef6ee"/>'
        )
        parts += _bands(samples, x, top, key)
        top += _BAND
    charts: list[tuple[str, list[tuple[str, Callable[[Sample], float], str]]]] = [
        (
            "count",
            [
                ("offers", lambda s: s.offers, _COLOURS["offers"]),
                ("records created", lambda s: s.records, _COLOURS["records"]),
            ],
        ),
        ("journal", [("journal depth", lambda s: s.depth, _COLOURS["depth"])]),
    ]
    for label, series in charts:
        top += 12
        high = max(1.0, *(value(s) for _, value, _ in series for s in samples))
        bottom = top + _CHART

        def y(v: float, bottom: float = bottom, high: float = high) -> float:
            return bottom - _CHART * v / high

        parts.append(
            f'<rect x="{_LEFT}" y="{top}" width="{plot}" height="{_CHART}" fill="none" '
            'stroke="#ccc"/>'
        )
        parts.append(f'<text x="{_LEFT - 6}" y="{top + 10}" text-anchor="end">{high:g}</text>')
        parts.append(f'<text x="{_LEFT - 6}" y="{bottom}" text-anchor="end">0</text>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{top + _CHART / 2}" text-anchor="end">{label}</text>'
        )
        legend = _LEFT + 8
        for name, value, colour in series:
            parts.append(_line(samples, x, y, value, colour))
            parts.append(f'<text x="{legend}" y="{top + 14}" fill="{colour}">{_esc(name)}</text>')
            legend += 8 * len(name) + 24
        top = bottom
    axis = top + 16
    step = next(s for s in (5, 10, 20, 30, 60, 120, 300, 600, 1e9) if end / s <= 12)
    tick = 0.0
    while tick <= end:
        parts.append(f'<text x="{x(tick):.1f}" y="{axis}" text-anchor="middle">{tick:g}s</text>')
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="10" x2="{x(tick):.1f}" y2="{top}" stroke="#eee"/>'
        )
        tick += step
    for note in notes:
        if note.text.startswith(("breaker", "fault", "region")):
            parts.append(
                f'<line x1="{x(note.t):.1f}" y1="10" x2="{x(note.t):.1f}" y2="{top}" '
                f'stroke="#999" stroke-dasharray="2,3"><title>{note.t:g}s {_esc(note.text)}'
                "</title></line>"
            )
    height = axis + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height:.0f}" '
        f'width="{_WIDTH}" height="{height:.0f}" font-family="sans-serif" font-size="11">'
        + "".join(parts)
        + "</svg>"
    )


def render_report(
    *,
    title: str,
    lines: Sequence[str],
    summary: Mapping[str, Any],
    samples: Sequence[Sample],
    notes: Sequence[Note],
    problems: Sequence[str],
    footer: str,
    details: Sequence[str] = (),
) -> str:
    """The whole page; `details` are lines shown under the summary table."""
    rows = "".join(
        f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>"
        for label, value in summary_rows(summary)
    )
    more = "".join(f"<p>{_esc(line)}</p>" for line in details)
    intro = "".join(f"<li>{_esc(line)}</li>" for line in lines)
    moments = "".join(f"<li><code>{n.t:7.1f}s</code> {_esc(n.text)}</li>" for n in notes)
    trouble = (
        "<h2>Problems</h2><ul>" + "".join(f"<li>{_esc(p)}</li>" for p in problems) + "</ul>"
        if problems
        else "<p class='ok'>Nothing lost, nothing duplicated.</p>"
    )
    legend = " ".join(
        f'<span style="color:{colour}">&#9632; {_esc(name.replace("_", " "))}</span>'
        for name, colour in _COLOURS.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: 2px 12px; border-bottom: 1px solid #eee; }}
td {{ text-align: right; font-variant-numeric: tabular-nums; }}
.ok {{ color: #2ca02c; font-weight: bold; }}
ul.moments {{ columns: 2; font-size: 90%; }}
</style></head><body>
<h1>{_esc(title)}</h1>
<ul>{intro}</ul>
<h2>Timeline</h2>
<p>{legend}</p>
{timeline_svg(samples, notes)}
<h2>Summary</h2>
<table>{rows}</table>
{more}
{trouble}
<h2>Moments</h2>
<ul class="moments">{moments}</ul>
<p><small>{_esc(footer)}</small></p>
</body></html>
"""
