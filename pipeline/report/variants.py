"""The report's variants section: every program variant's estimates side by side.

Self-contained (its own small inline SVG, no dependency on the other charts): per cohort
and treatment one row per variant, its estimate and confidence interval in the variant's
colour, so a reader sees at a glance where variants disagree. Shown only when the date
ran more than one variant; ``pipeline compare`` gives the numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from html import escape

import pandas as pd

from pipeline import storage
from pipeline.status import RunStatus
from pipeline.tasks import RunModel

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2")
ROW, LABEL_WIDTH, WIDTH = 16, 190, 760


def load_variants(status: RunStatus) -> dict[str, dict[str, pd.DataFrame]]:
    """variant slug → cohort → results, for every program of the date, from the targets."""
    date = dt.date.fromisoformat(status.run_date)
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for program in status.programs:
        cohorts = sorted({row.cohort for row in status.cohorts})
        for cohort in cohorts:
            task = RunModel(run_date=date, cohort=cohort, program=program)
            path = task.output()["results"].path
            if storage.exists(path):
                out.setdefault(task.spec.slug, {})[cohort] = storage.read_parquet(path)
    return out


def _num(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def variants_chart(results: dict[str, dict[str, pd.DataFrame]]) -> str:
    """An inline SVG: for each cohort × treatment, one interval per variant."""
    rows: list[tuple[str, int, float, float, float, str]] = []  # label, colour, est, ci, slug
    variants = list(results)
    keys = sorted(
        {
            (cohort, str(treatment))
            for by_cohort in results.values()
            for cohort, frame in by_cohort.items()
            for treatment in frame.get("treatment", [])
        }
    )
    for cohort, treatment in keys:
        for index, variant in enumerate(variants):
            frame = results[variant].get(cohort)
            if frame is None or "treatment" not in frame:
                continue
            match = frame[frame["treatment"].astype(str) == treatment]
            if match.empty:
                continue
            r = match.iloc[0]
            rows.append(
                (
                    f"{cohort} · {treatment}",
                    index,
                    _num(r.get("estimate")),
                    _num(r.get("ci_low")),
                    _num(r.get("ci_high")),
                    variant,
                )
            )
    values = [v for row in rows for v in row[2:5] if math.isfinite(v)]
    if not values:
        return "<p class='muted'>No variant has results yet.</p>"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    plot = WIDTH - LABEL_WIDTH - 20
    height = ROW * len(rows) + 30

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - lo) / span * plot

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="estimates of each variant side by side" '
        f'font-size="11" font-family="sans-serif">'
    ]
    previous = None
    for i, (label, colour, est, low, high, variant) in enumerate(rows):
        y = 12 + i * ROW
        fill = COLOURS[colour % len(COLOURS)]
        tip = escape(f"{label} — {variant}: {est:g} [{low:g}, {high:g}]")
        parts.append(f"<g><title>{tip}</title>")
        if label != previous:
            parts.append(
                f'<text x="{LABEL_WIDTH - 8}" y="{y + 4}" text-anchor="end">{escape(label)}</text>'
            )
            previous = label
        if math.isfinite(low) and math.isfinite(high):
            parts.append(
                f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" '
                f'stroke="{fill}" stroke-width="2"/>'
            )
        if math.isfinite(est):
            parts.append(f'<circle cx="{x(est):.1f}" cy="{y}" r="3.5" fill="{fill}"/>')
        parts.append("</g>")
    parts.append(
        f'<text x="{LABEL_WIDTH}" y="{height - 4}">{escape(f"{lo:g}")}</text>'
        f'<text x="{LABEL_WIDTH + plot}" y="{height - 4}" text-anchor="end">'
        f"{escape(f'{hi:g}')}</text></svg>"
    )
    legend = " ".join(
        f"<span style='color:{COLOURS[i % len(COLOURS)]}'>●</span> {escape(v)}"
        for i, v in enumerate(variants)
    )
    return f"<p>{legend}</p>{''.join(parts)}"


def variants_section(status: RunStatus) -> str:
    """The section's HTML; empty when the date ran one variant."""
    if len(status.programs) < 2:
        return ""
    return (
        "<h2 id='variants'>Variants side by side</h2>"
        "<p class='muted'>Each program variant's estimates with their confidence "
        "intervals; <code>pipeline compare --run-date "
        f"{escape(status.run_date)}</code> gives the differences and costs.</p>"
        + variants_chart(load_variants(status))
    )
