"""The report's variants section: every program variant's estimates side by side.

One forest chart per cohort (drawn by matplotlib through ``charts.forest``): per
treatment one row per variant, its estimate and confidence interval, so a reader sees at
a glance where variants disagree. Shown only when the date
ran more than one variant; ``pipeline compare`` gives the numbers.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import pandas as pd

from pipeline.report import charts
from pipeline.status import RunStatus


def _num(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def variants_chart(results: dict[str, dict[str, pd.DataFrame]]) -> str:
    """One forest chart per cohort (matplotlib, inline SVG): for each treatment, one
    estimate and interval per variant, so a reader sees where variants disagree."""
    variants = list(results)
    cohorts = sorted({cohort for by_cohort in results.values() for cohort in by_cohort})
    drawn = []
    for cohort in cohorts:
        rows = []
        treatments = sorted(
            {
                str(t)
                for by_cohort in results.values()
                for t in by_cohort.get(cohort, pd.DataFrame()).get("treatment", [])
            }
        )
        for treatment in treatments:
            for variant in variants:
                frame = results[variant].get(cohort)
                if frame is None or "treatment" not in frame:
                    continue
                match = frame[frame["treatment"].astype(str) == treatment]
                if match.empty:
                    continue
                r = match.iloc[0]
                est, low, high = (_num(r.get(k)) for k in ("estimate", "ci_low", "ci_high"))
                rows.append(
                    charts.Interval(
                        f"{treatment} · {variant}", est, low, high,
                        flagged=not (low <= est <= high),
                    )
                )  # fmt: skip
        drawn.append((rows, cohort, f"{cohort}: estimates of each variant"))
    if not drawn:
        return "<p class='muted'>No variant has results yet.</p>"
    return "".join(charts.forests(drawn))


def variants_section(status: RunStatus, cohorts: list[Any]) -> str:
    """The section's HTML; empty when the date ran one variant. ``cohorts``: what
    ``pipeline.report.load`` read for ``status.cohorts``, row by row."""
    if len(status.programs) < 2:
        return ""
    slugs = {row.program: row.variant for row in status.cohorts}
    # variant slug -> cohort -> results, the variants in the order of status.programs
    results: dict[str, dict[str, pd.DataFrame]] = {
        slugs[p]: {} for p in status.programs if p in slugs
    }
    for row, data in zip(status.cohorts, cohorts, strict=True):
        if data.results is not None:
            results[row.variant][row.cohort] = data.results
    results = {slug: by_cohort for slug, by_cohort in results.items() if by_cohort}
    return (
        "<h2 id='variants'>Variants side by side</h2>"
        "<p class='muted'>Each program variant's estimates with their confidence "
        "intervals; <code>pipeline compare --run-date "
        f"{escape(status.run_date)}</code> gives the differences and costs.</p>"
        + variants_chart(results)
    )
