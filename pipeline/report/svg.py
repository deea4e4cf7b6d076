"""Small inline-SVG charts for the run report, built by hand (no plotting dependency).

Every function returns an ``<svg>`` element as text; every label is escaped. Hovering a
mark shows its exact values (SVG ``<title>``), so no script is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

FONT = 12
ROW = 22
LABEL_WIDTH = 170
PALETTE = {
    "cleanse": "#4e79a7",
    "ingest_survey": "#76b7b2",
    "model": "#f28e2b",
    "validate": "#59a14f",
    "ingest": "#b07aa1",
}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


@dataclass(frozen=True)
class Interval:
    label: str
    estimate: float
    low: float
    high: float
    flagged: bool = False  # e.g. failed a validation check


def forest(rows: Sequence[Interval], *, width: int = 720, title: str = "") -> str:
    """Estimates with confidence intervals: one row per label, a shared x axis."""
    values = [v for r in rows for v in (r.estimate, r.low, r.high) if math.isfinite(v)]
    if not rows or not values:
        return _empty("no estimates", width)
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    plot_w = width - LABEL_WIDTH - 90
    height = ROW * len(rows) + 40

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - lo) / ((hi - lo) or 1.0) * plot_w

    parts = [_open(width, height, title or "estimates with confidence intervals")]
    for tick in ticks:
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="10" x2="{tx:.1f}" y2="{height - 25}" class="grid"/>'
            f'<text x="{tx:.1f}" y="{height - 10}" text-anchor="middle" class="tick">'
            f"{escape(_fmt(tick))}</text>"
        )
    for i, r in enumerate(rows):
        y = 20 + i * ROW
        cls = "ci flagged" if r.flagged else "ci"
        tip = escape(f"{r.label}: {r.estimate:g} [{r.low:g}, {r.high:g}]")
        parts.append(
            f'<g class="{cls}"><title>{tip}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 4}" text-anchor="end">{escape(r.label)}</text>'
        )
        if all(math.isfinite(v) for v in (r.low, r.high)):
            parts.append(
                f'<line x1="{x(r.low):.1f}" y1="{y}" x2="{x(r.high):.1f}" y2="{y}"/>'
                f'<line x1="{x(r.low):.1f}" y1="{y - 5}" x2="{x(r.low):.1f}" y2="{y + 5}"/>'
                f'<line x1="{x(r.high):.1f}" y1="{y - 5}" x2="{x(r.high):.1f}" y2="{y + 5}"/>'
            )
        if math.isfinite(r.estimate):
            parts.append(f'<circle cx="{x(r.estimate):.1f}" cy="{y}" r="4"/>')
            parts.append(
                f'<text x="{LABEL_WIDTH + plot_w + 8}" y="{y + 4}" class="value">'
                f"{escape(_fmt(r.estimate))}</text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def bars(items: Sequence[tuple[str, float]], *, width: int = 720, title: str = "", total=None):
    """Horizontal bars, largest first; ``total`` adds a percentage to each label."""
    if not items:
        return _empty("nothing to show", width)
    top = max(v for _, v in items) or 1.0
    plot_w = width - LABEL_WIDTH - 130
    height = ROW * len(items) + 16
    parts = [_open(width, height, title or "bar chart")]
    for i, (label, value) in enumerate(items):
        y = 8 + i * ROW
        w = max(value / top * plot_w, 0.0)
        share = f" ({value / total:.1%})" if total else ""
        tip = escape(f"{label}: {value:,.0f}{share}")
        parts.append(
            f'<g class="bar"><title>{tip}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 2}" width="{w:.1f}" height="{ROW - 6}"/>'
            f'<text x="{LABEL_WIDTH + w + 6:.1f}" y="{y + 14}" class="value">'
            f"{escape(f'{value:,.0f}{share}')}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Span:
    row: str
    step: str
    start: datetime
    end: datetime
    failed: bool = False


def timeline(spans: Sequence[Span], *, width: int = 900, title: str = "") -> str:
    """A Gantt chart: one row per cohort, one bar per step, time on the x axis."""
    if not spans:
        return _empty("no timings recorded", width)
    rows = list(dict.fromkeys(s.row for s in spans))
    t0 = min(s.start for s in spans)
    t1 = max(s.end for s in spans)
    total = max((t1 - t0).total_seconds(), 1e-3)
    plot_w = width - LABEL_WIDTH - 20
    height = ROW * len(rows) + 50
    parts = [_open(width, height, title or "timeline")]
    for tick in nice_ticks(0, total):
        if tick > total * 1.0001:
            break
        tx = LABEL_WIDTH + tick / total * plot_w
        parts.append(
            f'<line x1="{tx:.1f}" y1="4" x2="{tx:.1f}" y2="{height - 40}" class="grid"/>'
            f'<text x="{tx:.1f}" y="{height - 26}" text-anchor="middle" class="tick">'
            f"+{escape(_fmt(tick))}s</text>"
        )
    for i, row in enumerate(rows):
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{8 + i * ROW + 13}" text-anchor="end">'
            f"{escape(row)}</text>"
        )
    for span in spans:
        y = 8 + rows.index(span.row) * ROW
        x0 = LABEL_WIDTH + (span.start - t0).total_seconds() / total * plot_w
        w = max((span.end - span.start).total_seconds() / total * plot_w, 1.5)
        seconds = (span.end - span.start).total_seconds()
        tip = escape(
            f"{span.row} {span.step}: {seconds:.1f}s from {span.start:%H:%M:%S}"
            + (" (failed)" if span.failed else "")
        )
        colour = PALETTE.get(span.step, "#999")
        parts.append(
            f'<rect class="span{" failed" if span.failed else ""}" x="{x0:.1f}" y="{y + 2}" '
            f'width="{w:.1f}" height="{ROW - 6}" fill="{colour}"><title>{tip}</title></rect>'
        )
    lx = LABEL_WIDTH
    for step, colour in PALETTE.items():
        parts.append(
            f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{height - 7}" class="tick">{escape(step)}</text>'
        )
        lx += 24 + 8 * len(step)
    parts.append("</svg>")
    return "".join(parts)


def _open(width: int, height: int, label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'font-size="{FONT}">'
    )


def _empty(text: str, width: int) -> str:
    return _open(width, 30, text) + f'<text x="8" y="20">{escape(text)}</text></svg>'
