"""A dependency-free SVG chart of the offer-path figures, for docs/perf/.

Grouped bars on a log scale: one group per instance condition, one bar per contender. The
bar reaches the p99, a white tick across it marks the p50, and the number of lost calls is
written inside a bar that lost any. A dashed line marks the 8 s after which a call is lost.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

_WIDTH, _HEIGHT = 760, 400
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 50, 80
_LOW, _HIGH = 0.1, 20_000.0  # ms, the ends of the log axis
_COLOURS = ("#1b7837", "#d95f02", "#7570b3", "#e7298a")
_LABELS = {"blackholed": "black-holed", "rate_limited": "rate-limited"}


def _y(ms: float) -> float:
    """The vertical position of `ms` on the log axis."""
    span = math.log10(_HIGH) - math.log10(_LOW)
    share = (math.log10(min(max(ms, _LOW), _HIGH)) - math.log10(_LOW)) / span
    return _TOP + (1 - share) * (_HEIGHT - _TOP - _BOTTOM)


def _text(x: float, y: float, words: str, **attributes: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(words)}</text>'


def offer_latency_svg(cells: dict[str, dict[str, dict[str, Any]]], *, lost_after_ms: float) -> str:
    """Draw `cells` (contender -> condition -> {p50_ms, p99_ms, lost}) as an SVG document."""
    contenders = list(cells)
    conditions = list(next(iter(cells.values())))
    plot_width = _WIDTH - _LEFT - _RIGHT
    group = plot_width / len(conditions)
    bar = group * 0.8 / len(contenders)
    floor = _y(_LOW)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="white"/>',
        _text(_LEFT, 24, "Offer latency p99 (bar) and p50 (tick), ms, log scale", font_size="15"),
    ]
    for power in range(round(math.log10(_LOW)), round(math.log10(_HIGH)) + 1):
        ms = 10.0**power
        y = _y(ms)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(_text(_LEFT - 6, y + 4, f"{ms:g}", text_anchor="end"))
    cap = _y(lost_after_ms)
    parts.append(
        f'<line x1="{_LEFT}" y1="{cap:.1f}" x2="{_WIDTH - _RIGHT}" y2="{cap:.1f}" '
        'stroke="#b2182b" stroke-dasharray="6 4"/>'
    )
    parts.append(_text(_LEFT + 4, cap - 5, "8 s: lost after", fill="#b2182b"))
    for g, condition in enumerate(conditions):
        left = _LEFT + g * group + group * 0.1
        label = _LABELS.get(condition, condition)
        parts.append(_text(left + group * 0.4, floor + 18, label, text_anchor="middle"))
        for c, contender in enumerate(contenders):
            figure = cells[contender][condition]
            x = left + c * bar
            top = _y(figure["p99_ms"])
            colour = _COLOURS[c % len(_COLOURS)]
            parts.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{bar - 2:.1f}" '
                f'height="{floor - top:.1f}" fill="{colour}"/>'
            )
            middle = _y(figure["p50_ms"])
            parts.append(
                f'<line x1="{x:.1f}" y1="{middle:.1f}" x2="{x + bar - 2:.1f}" y2="{middle:.1f}" '
                'stroke="white" stroke-width="2"/>'
            )
            if figure["lost"]:
                for line, words in enumerate((f"{figure['lost']}", "lost")):
                    y = top + 14 + 12 * line
                    parts.append(
                        _text(x + bar / 2 - 1, y, words, text_anchor="middle", fill="white")
                    )
    for c, contender in enumerate(contenders):
        x = _LEFT + c * 200
        y = _HEIGHT - 24
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" '
            f'fill="{_COLOURS[c % len(_COLOURS)]}"/>'
        )
        parts.append(_text(x + 18, y, contender))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
