"""The run report's charts: matplotlib figures rendered to inline SVG.

Each function returns one ``<svg>`` element as text, ready to put in the page: no script,
no external font (text is drawn as paths, so the page looks the same on any machine,
offline), ids made unique per chart, and the same bytes for the same data (a fixed
``svg.hashsalt``, no date in the metadata). Figures are built with ``Figure`` and the SVG
canvas directly: no pyplot, no global state, safe in any process.

Every axis is set from the data it shows, with a margin, so every estimate, interval,
bar and span lies inside its axes however large, small or negative the values are. Long
labels (Japanese cohort names) are wrapped and the layout engine makes room for them.
Japanese text uses IPAexGothic from the ``matplotlib-fontja`` package (IPA Font License);
Latin text and numbers use matplotlib's DejaVu Sans.

Marks carry ids for tests and tooltips: the plot area of each axes is ``…plotarea``, the
data marks are ``…marks-*`` (points, intervals, bars) and ``…span-N[-failed]`` (timeline).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import multiprocessing
import os
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from pipeline.steps import DATE, STEPS, VARIANT

WIDTH_IN = 7.5  # 720 CSS px
ROW_IN = 0.32
LABEL_COLUMNS = 30  # wrap y labels at this many columns (a CJK character takes two)
MIN_CHARTS_PER_WORKER = 8  # fewer are drawn here: a process is not worth its start
BLUE, RED, GREY = "#4e79a7", "#c62828", "#777777"
# The timeline shows the date's steps and each variant's (pipeline.steps), a colour each.
TIMELINE_STEPS = tuple(step.name for step in STEPS if step.scope in (DATE, VARIANT))
PALETTE = dict(
    zip(TIMELINE_STEPS, ("#4e79a7", "#76b7b2", "#f28e2b", "#59a14f", "#b07aa1"), strict=True)
)
JAPANESE_FONT = "IPAexGothic"
RC = {
    "svg.hashsalt": "survey-pipeline-report",  # stable ids: same data, same bytes
    "svg.fonttype": "path",  # no font needed where the page is opened
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#999999",
    "axes.titlesize": 10,
    "axes.titlelocation": "left",
    "xtick.color": "#555555",
    "ytick.color": "#222222",
    "grid.color": "#e6e6e6",
}


@dataclass(frozen=True)
class Interval:
    label: str
    estimate: float
    low: float
    high: float
    flagged: bool = False  # the estimate lies outside its own interval


@dataclass(frozen=True)
class Span:
    row: str
    step: str
    start: datetime
    end: datetime
    failed: bool = False


@functools.cache
def fonts() -> list[str]:
    """The font families to use, in fallback order; registers the Japanese font once."""
    spec = importlib.util.find_spec("matplotlib_fontja")  # found, not imported: importing
    # it would switch matplotlib's global font for the whole process
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for ttf in sorted((Path(folder) / "fonts").glob("*.ttf")):
            font_manager.fontManager.addfont(str(ttf))
    names = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *([JAPANESE_FONT] if JAPANESE_FONT in names else [])]


def forest(rows: Sequence[Interval], *, title: str, label: str) -> str:
    """Estimates with confidence intervals: one row per label, a shared x axis."""
    shown = [r for r in rows if _finite(r.estimate, r.low, r.high)]
    if not shown:
        return _empty(label, "no finite estimates to draw")
    values = [v for r in shown for v in (r.estimate, r.low, r.high)]
    with matplotlib.rc_context({**RC, "font.family": fonts()}):
        fig, ax = _figure(len(rows), title)
        ys = list(range(len(rows)))[::-1]  # first row on top
        tips = {}
        for i, (y, r) in enumerate(zip(ys, rows, strict=True)):
            if r not in shown:
                continue
            colour = RED if r.flagged else BLUE
            low, high = sorted((r.low, r.high))
            (ci,) = ax.plot([low, high], [y, y], color=colour, linewidth=2,
                            marker="|", markersize=9, markeredgewidth=1.5)  # fmt: skip
            ci.set_gid(f"marks-ci-{i}")
            (point,) = ax.plot([r.estimate], [y], "o", color=colour, markersize=5, zorder=3)
            point.set_gid(f"marks-point-{i}")
            tip = f"{r.label}: {r.estimate:g} [{r.low:g}, {r.high:g}]"
            tips[f"marks-ci-{i}"] = tips[f"marks-point-{i}"] = tip + (
                " (outside its interval)" if r.flagged else ""
            )
        ax.set_xlim(*_limits(values))
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_yticks(ys, [_wrap(r.label) + ("" if r in shown else "\n(no value)") for r in rows])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick))
        ax.grid(axis="x")
        if min(values) < 0 < max(values):
            ax.axvline(0, color=GREY, linewidth=0.8, zorder=0)
        return _svg(fig, label, tips)


def forests(charts: Sequence[tuple[Sequence[Interval], str, str]]) -> list[str]:
    """``forest(rows, title=title, label=label)`` of each (rows, title, label), in order,
    drawn on every core: a report of a wide delivery has a chart per cohort and variant
    (600 at 200 cohorts × 2 variants, about 55 ms each), and drawing holds the GIL, so
    the charts are drawn by forked processes (the same bytes as drawn here)."""
    workers = min(os.cpu_count() or 1, len(charts) // MIN_CHARTS_PER_WORKER)
    if workers < 2:
        return [_forest(chart) for chart in charts]
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=fork) as pool:
        return list(pool.map(_forest, charts, chunksize=MIN_CHARTS_PER_WORKER))


def _forest(chart: tuple[Sequence[Interval], str, str]) -> str:
    rows, title, label = chart
    return forest(rows, title=title, label=label)


def bars(items: Sequence[tuple[str, float]], *, title: str, label: str, total=None) -> str:
    """Horizontal bars, one per label in the given order, each with its value (and its
    share of ``total``) at its end."""
    items = [(name, float(v)) for name, v in items if _finite(float(v))]
    if not items:
        return _empty(label, "nothing to show")
    with matplotlib.rc_context({**RC, "font.family": fonts()}):
        fig, ax = _figure(len(items), title)
        ys = list(range(len(items)))[::-1]
        drawn = ax.barh(ys, [v for _, v in items], height=0.6, color="#e15759")
        for i, patch in enumerate(drawn.patches):
            patch.set_gid(f"marks-bar-{i}")
        texts = [f"{v:,.0f}" + (f" ({v / total:.1%})" if total else "") for _, v in items]
        ax.bar_label(drawn, texts, padding=3, color="#555555")
        low, high = min(0.0, *(v for _, v in items)), max(0.0, *(v for _, v in items))
        span = (high - low) or 1.0
        # room at the end of the longest bar for its label
        ax.set_xlim(low - (0.3 * span if low < 0 else 0), high + 0.3 * span)
        ax.set_ylim(-0.7, len(items) - 0.3)
        ax.set_yticks(ys, [_wrap(name) for name, _ in items])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick))
        ax.grid(axis="x")
        tips = {f"marks-bar-{i}": f"{name}: {text}" for i, ((name, _), text)
                in enumerate(zip(items, texts, strict=True))}  # fmt: skip
        return _svg(fig, label, tips)


def timeline(spans: Sequence[Span], *, title: str, label: str) -> str:
    """A Gantt chart: one row per cohort, one bar per step, seconds since the first step."""
    if not spans:
        return _empty(label, "no timings recorded")
    rows = list(dict.fromkeys(s.row for s in spans))
    t0 = min(s.start for s in spans)
    t1 = max(max(s.end, s.start) for s in spans)
    total = max((t1 - t0).total_seconds(), 1e-3)
    with matplotlib.rc_context({**RC, "font.family": fonts()}):
        fig, ax = _figure(len(rows), title, extra_in=0.35)
        tips = {}
        for i, span in enumerate(spans):
            y = len(rows) - 1 - rows.index(span.row)
            start = (span.start - t0).total_seconds()
            seconds = max((span.end - span.start).total_seconds(), 0.0)
            (patch,) = ax.barh(
                y,
                max(seconds, total / 400),  # a zero-length step still shows
                left=start,
                height=0.6,
                color=PALETTE.get(span.step, "#999999"),
                edgecolor=RED if span.failed else "none",
                linewidth=2 if span.failed else 0,
                alpha=0.55 if span.failed else 1.0,
            ).patches
            gid = f"span-{i}" + ("-failed" if span.failed else "")
            patch.set_gid(gid)
            tips[gid] = (f"{span.row} {span.step}: {seconds:.1f}s from {span.start:%H:%M:%S}"
                         + (" (failed)" if span.failed else ""))  # fmt: skip
        ax.set_xlim(-0.02 * total, total * 1.03)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_yticks(range(len(rows))[::-1], [_wrap(r) for r in rows])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"+{_tick(v, None)}s"))
        ax.grid(axis="x")
        handles = [matplotlib.patches.Patch(color=c, label=s) for s, c in PALETTE.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                   frameon=False)  # fmt: skip
        return _svg(fig, label, tips)


# --- helpers ---------------------------------------------------------------------------


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _limits(values: Sequence[float]) -> tuple[float, float]:
    """The x range showing every value with a 5 % margin on each side."""
    low, high = min(values), max(values)
    span = high - low
    if span <= abs(high) * 1e-12 or span == 0:  # one value (or all equal)
        span = abs(high) or 1.0
    return low - 0.05 * span, high + 0.05 * span


def _tick(value: float, _pos: object) -> str:
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e9:  # patients counts read best in full: 13,500,000
        return f"{value:,.9g}"
    return f"{value:.3g}"


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _wrap(text: str, columns: int = LABEL_COLUMNS) -> str:
    """Break a label into lines of at most ``columns`` (wide characters count two),
    at spaces where there are any, anywhere in CJK text."""
    lines, line = [], ""
    for word in re.findall(r"\S+\s*|\s+", text):
        pieces = [word] if _columns(word) <= columns else list(word)
        for piece in pieces:
            if line and _columns(line + piece.rstrip()) > columns:
                lines.append(line.rstrip())
                line = ""
            line += piece
    lines.append(line.rstrip())
    return "\n".join(lines[:4]) + ("…" if len(lines) > 4 else "")


def _figure(rows: int, title: str, *, extra_in: float = 0.0) -> tuple[Figure, object]:
    fig = Figure(figsize=(WIDTH_IN, 0.9 + extra_in + ROW_IN * max(rows, 1)), layout="constrained")
    FigureCanvasSVG(fig)
    ax = fig.add_subplot()
    ax.patch.set_gid("plotarea")
    ax.set_title(_wrap(title, 2 * LABEL_COLUMNS + 40))
    ax.tick_params(axis="y", length=0)
    ax.set_axisbelow(True)  # grid lines behind the marks
    return fig, ax


def _svg(fig: Figure, label: str, tips: dict[str, str]) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # matplotlib's "*{...}" rule would reach the whole page; the page's CSS has it, scoped
    text = re.sub(r'<style type="text/css">.*?</style>\s*', "", text, flags=re.S)
    prefix = re.sub(r"[^\w-]+", "-", label).strip("-") + "-"  # unique per label
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m[1]}"', text)
    text = re.sub(r'(href="#|url\(#)([^")]+)', lambda m: f"{m[1]}{prefix}{m[2]}", text)
    for gid, tip in tips.items():
        text = text.replace(f'<g id="{prefix}{gid}">', f'<g id="{prefix}{gid}"><title>'
                            f"{escape(tip)}</title>", 1)  # fmt: skip
    return text.replace("<svg ", f'<svg class="chart" role="img" aria-label="{escape(label)}" ', 1)


def _empty(label: str, text: str) -> str:
    return (
        f'<svg class="chart empty" role="img" aria-label="{escape(label)}" width="720" '
        f'height="30" viewBox="0 0 720 30"><text x="8" y="20">{escape(text)}</text></svg>'
    )
