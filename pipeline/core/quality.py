"""Data-quality checks of one cohort's cleansed delivery, before any program runs.

Pure: the task (``pipeline.tasks.quality.CheckData``) reads the cleansing outputs and the
figures of recent deliveries and passes them in. Checks have the same shape and
severities as ``pipeline.core.validate`` (``check, severity, passed, detail``): a failed
``error`` check stops the cohort before its program runs, a ``warning`` is recorded.
docs/quality.md explains every check and its thresholds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.core.validate import CHECK_COLUMNS, ERROR, WARNING, CheckRow

MIX_SEGMENTS = ("specialty", "region")
_FIRST_DELIVERY = "no earlier delivery to compare with (first delivery)"


@dataclass(frozen=True)
class QualityThresholds:
    """``[quality]`` in luigi.cfg. Changes are fractions (0.3 = 30 %); rate increases are
    in fractions of the cohort's raw rows (0.05 = 5 percentage points)."""

    history: int = 5  # recent deliveries compared with
    row_count_warn_change: float = 0.3
    row_count_fail_change: float = 0.6
    rejection_warn_increase: float = 0.05
    rejection_fail_increase: float = 0.15
    mix_warn_gap: float = 0.25
    mix_fail_gap: float = 0.50
    # Fewer respondents than this make the mix too noisy to stop a cohort: warning at most.
    mix_min_rows: int = 100

    def __post_init__(self) -> None:
        for warn, fail in (
            ("row_count_warn_change", "row_count_fail_change"),
            ("rejection_warn_increase", "rejection_fail_increase"),
            ("mix_warn_gap", "mix_fail_gap"),
        ):
            if not 0 <= getattr(self, warn) <= getattr(self, fail):
                raise ValueError(f"[quality] need 0 <= {warn} <= {fail}")


def cohort_figures(
    cohort: str,
    summary: Mapping[str, Any],
    rejections: pd.DataFrame,
    cleansed: pd.DataFrame,
    reasons: Sequence[str],
) -> dict[str, Any]:
    """The figures of one cohort's delivery that later deliveries are compared with:
    rows kept and rejected, rejection rate overall and per reason (of the cohort's raw
    rows), and the share of respondents per specialty and region."""
    info = (summary.get("cohorts") or {}).get(cohort, {})
    kept, rejected = int(info.get("cleansed", len(cleansed))), int(info.get("rejected", 0))
    raw = kept + rejected
    mine = rejections[rejections["cohort"].astype("string") == cohort] if len(rejections) else []
    per_reason = {r: 0 for r in reasons}
    if len(mine):
        for reason, count in (
            mine["reasons"].astype("string").str.split(";").explode().value_counts().items()
        ):
            per_reason[str(reason)] = int(count)
    figures: dict[str, Any] = {
        "rows": kept,
        "rejected": rejected,
        "rejection_rate": rejected / raw if raw else 0.0,
        "reason_rates": {r: (n / raw if raw else 0.0) for r, n in sorted(per_reason.items())},
    }
    for segment in MIX_SEGMENTS:
        if segment in cleansed.columns and len(cleansed):
            shares = (
                cleansed[segment].astype("string").fillna("(missing)").value_counts(normalize=True)
            )
            figures[segment] = {str(k): float(v) for k, v in sorted(shares.items())}
        else:
            figures[segment] = {}
    return figures


def frame_mix(frame: pd.DataFrame, segment: str) -> dict[str, float]:
    """Each value's share of the frame's physicians."""
    physicians = pd.to_numeric(frame["n_physicians"], errors="coerce").fillna(0)
    totals = physicians.groupby(frame[segment].astype("string")).sum()
    total = float(totals.sum())
    return {str(k): float(v) / total for k, v in totals.items()} if total else {}


def frame_mixes(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The frame's share of physicians per value of each ``MIX_SEGMENTS`` it has: what
    every cohort's mix checks compare with (the same for every cohort of a date)."""
    return {s: frame_mix(frame, s) for s in MIX_SEGMENTS if s in frame.columns}


def quality_checks(
    figures: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    population: Mapping[str, Mapping[str, float]],
    thresholds: QualityThresholds,
) -> pd.DataFrame:
    """Compare one cohort's ``figures`` with the ``history`` (figures of recent
    deliveries, newest first) and the physician frame's ``population`` mixes
    (``frame_mixes``). One row per check."""
    n = len(history)
    recent = f"the last {n} deliveries" if n != 1 else "the last delivery"
    rows = int(figures["rows"])
    checks = [
        _row_count_check(rows, history, recent, thresholds),
        _rejection_rate_check(float(figures["rejection_rate"]), history, recent, thresholds),
        _rejection_reasons_check(figures, history, recent, thresholds),
        *(_mix_check(segment, figures, rows, population, thresholds) for segment in MIX_SEGMENTS),
    ]
    return pd.DataFrame(checks, columns=list(CHECK_COLUMNS))


def _graded(check: str, value: float, warn: float, fail: float, detail: str) -> CheckRow:
    """A figure against its two thresholds: passed up to ``warn``, an error above ``fail``."""
    return (check, ERROR if value > fail else WARNING, value <= warn, detail)


def _row_count_check(
    rows: int, history: Sequence[Mapping[str, Any]], recent: str, t: QualityThresholds
) -> CheckRow:
    """``dq_row_count``: reads the cleansed rows and the history's; decides whether the
    count moved too far from the recent median (no rows at all: an error)."""
    if rows == 0:
        return (
            "dq_row_count",
            ERROR,
            False,
            "no cleansed rows: every row was rejected or none was delivered",
        )
    if not history:
        return ("dq_row_count", WARNING, True, f"{rows:,} rows; {_FIRST_DELIVERY}")
    baseline = statistics.median(int(h["rows"]) for h in history)
    change = abs(rows - baseline) / max(baseline, 1)
    return _graded(
        "dq_row_count",
        change,
        t.row_count_warn_change,
        t.row_count_fail_change,
        f"{rows:,} rows vs a median of {baseline:,.0f} over {recent} ({100 * change:.1f}% "
        f"change; warning above {100 * t.row_count_warn_change:.0f}%, error above "
        f"{100 * t.row_count_fail_change:.0f}%)",
    )


def _rejection_rate_check(
    rate: float, history: Sequence[Mapping[str, Any]], recent: str, t: QualityThresholds
) -> CheckRow:
    """``dq_rejection_rate``: reads the rejection rate and the history's; decides whether
    it rose too far above the recent mean."""
    if not history:
        return (
            "dq_rejection_rate",
            WARNING,
            True,
            f"{100 * rate:.1f}% of rows rejected; {_FIRST_DELIVERY}",
        )
    baseline = statistics.fmean(float(h["rejection_rate"]) for h in history)
    increase = rate - baseline
    return _graded(
        "dq_rejection_rate",
        increase,
        t.rejection_warn_increase,
        t.rejection_fail_increase,
        f"{100 * rate:.1f}% of rows rejected vs {100 * baseline:.1f}% over {recent} "
        f"({100 * increase:+.1f} points; warning above "
        f"+{100 * t.rejection_warn_increase:.0f}, "
        f"error above +{100 * t.rejection_fail_increase:.0f})",
    )


def _rejection_reasons_check(
    figures: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    recent: str,
    t: QualityThresholds,
) -> CheckRow:
    """``dq_rejection_reasons``: reads each reason's rate and the history's; decides
    whether any one reason rose too far above its recent mean (the largest rise counts)."""
    if not history:
        return ("dq_rejection_reasons", WARNING, True, _FIRST_DELIVERY)
    increases = {
        reason: share
        - statistics.fmean(float(h.get("reason_rates", {}).get(reason, 0.0)) for h in history)
        for reason, share in figures["reason_rates"].items()
    }
    worst = max(sorted(increases), key=lambda r: increases[r]) if increases else None
    top = increases.get(worst, 0.0) if worst else 0.0
    above = sorted(r for r, v in increases.items() if v > t.rejection_warn_increase)
    return _graded(
        "dq_rejection_reasons",
        top,
        t.rejection_warn_increase,
        t.rejection_fail_increase,
        (
            f"rejections rose for: {', '.join(above)}; largest: {worst} "
            f"{100 * figures['reason_rates'][worst]:.1f}% "
            f"({100 * top:+.1f} points vs {recent})"
        )
        if above
        else f"no reason rose by more than {100 * t.rejection_warn_increase:.0f} points "
        f"vs {recent}",
    )


def _mix_check(
    segment: str,
    figures: Mapping[str, Any],
    rows: int,
    mixes: Mapping[str, Mapping[str, float]],
    t: QualityThresholds,
) -> CheckRow:
    """``dq_<segment>_mix``: reads the respondents' and the frame's shares of ``segment``;
    decides whether their largest gap is too wide (a small cohort: a warning at most)."""
    sample, population = figures.get(segment) or {}, mixes.get(segment) or {}
    name = f"dq_{segment}_mix"
    if not sample or not population:
        return (name, WARNING, True, f"no {segment} to compare (no rows or no frame)")
    gaps = {
        v: sample.get(v, 0.0) - population.get(v, 0.0)
        for v in sorted(set(sample) | set(population))
    }
    worst = max(gaps, key=lambda v: abs(gaps[v]))
    gap = abs(gaps[worst])
    small = rows < t.mix_min_rows
    return _graded(
        name,
        gap,
        t.mix_warn_gap,
        math.inf if small else t.mix_fail_gap,  # too few rows to stop the cohort
        f"largest gap between respondents and the frame's physicians: {worst} "
        f"{100 * sample.get(worst, 0.0):.1f}% vs {100 * population.get(worst, 0.0):.1f}% "
        f"({100 * gap:.1f} points; warning above {100 * t.mix_warn_gap:.0f}, error above "
        f"{100 * t.mix_fail_gap:.0f}"
        + (f" with at least {t.mix_min_rows} rows)" if small else ")"),
    )
