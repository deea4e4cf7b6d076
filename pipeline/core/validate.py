"""Plausibility checks of a program's results, returned as data (one row per check).

A failed ``error`` check blocks ingest of the cohort's estimates; a ``warning`` is
recorded and shown but does not block.
"""

from __future__ import annotations

import pandas as pd

REQUIRED_COLUMNS = ("treatment", "estimate", "ci_low", "ci_high")
CHECK_COLUMNS = ("check", "severity", "passed", "detail")
ERROR, WARNING = "error", "warning"
# A CI wider than this many times the estimate is suspicious, not wrong.
WIDE_INTERVAL_RATIO = 2.0


def _examples(values: pd.Series, limit: int = 5) -> str:
    items = [str(v) for v in values.tolist()[:limit]]
    more = len(values) - len(items)
    return ", ".join(items) + (f" (+{more} more)" if more > 0 else "")


def validate_results(results: pd.DataFrame, treatments: list[str]) -> pd.DataFrame:
    """Check ``results`` (the program's output table) against the cohort's ``treatments``.

    Returns a DataFrame with columns ``check, severity, passed, detail``. Checks that
    cannot run because required columns are missing are reported as failed, not skipped.
    """
    checks: list[tuple[str, str, bool, str]] = []

    def add(check: str, severity: str, passed: bool, detail: str) -> None:
        checks.append((check, severity, bool(passed), detail))

    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    add(
        "required_columns",
        ERROR,
        not missing,
        f"missing columns: {', '.join(missing)}" if missing else "all required columns present",
    )
    add("not_empty", ERROR, len(results) > 0, f"{len(results)} result rows")
    if missing:
        return pd.DataFrame(checks, columns=list(CHECK_COLUMNS))

    numbers = results[["estimate", "ci_low", "ci_high"]].apply(pd.to_numeric, errors="coerce")
    treatment = results["treatment"].astype("string")

    bad_number = numbers.isna().any(axis=1) | treatment.isna()
    add(
        "no_missing_values",
        ERROR,
        not bad_number.any(),
        f"missing or non-numeric values for: {_examples(treatment[bad_number].fillna('<none>'))}"
        if bad_number.any()
        else "every treatment has estimate, ci_low and ci_high",
    )
    negative = (numbers < 0).any(axis=1)
    add(
        "non_negative",
        ERROR,
        not negative.any(),
        f"negative values for: {_examples(treatment[negative])}"
        if negative.any()
        else "no negative values",
    )
    outside = (
        ~((numbers["ci_low"] <= numbers["estimate"]) & (numbers["estimate"] <= numbers["ci_high"]))
        & ~bad_number
    )
    add(
        "ci_contains_estimate",
        ERROR,
        not outside.any(),
        f"ci_low <= estimate <= ci_high fails for: {_examples(treatment[outside])}"
        if outside.any()
        else "ci_low <= estimate <= ci_high for every row",
    )
    duplicated = treatment[treatment.duplicated()].dropna().unique()
    add(
        "unique_treatments",
        ERROR,
        len(duplicated) == 0,
        f"treatments appear more than once: {_examples(pd.Series(duplicated))}"
        if len(duplicated)
        else "one row per treatment",
    )
    present = set(treatment.dropna())
    absent = [t for t in treatments if t not in present]
    add(
        "treatments_complete",
        ERROR,
        not absent,
        f"no result for: {_examples(pd.Series(absent))}"
        if absent
        else f"all {len(treatments)} treatments present",
    )
    unexpected = sorted(present - set(treatments))
    add(
        "no_unknown_treatments",
        WARNING,
        not unexpected,
        f"treatments not in the survey: {_examples(pd.Series(unexpected))}"
        if unexpected
        else "every result treatment is in the survey",
    )
    width = numbers["ci_high"] - numbers["ci_low"]
    wide = (width > WIDE_INTERVAL_RATIO * numbers["estimate"].abs()) & ~bad_number
    add(
        "interval_width",
        WARNING,
        not wide.any(),
        f"interval wider than {WIDE_INTERVAL_RATIO:g}x the estimate for: "
        f"{_examples(treatment[wide])}"
        if wide.any()
        else f"every interval within {WIDE_INTERVAL_RATIO:g}x the estimate",
    )
    return pd.DataFrame(checks, columns=list(CHECK_COLUMNS))


def blocking_failures(checks: pd.DataFrame) -> pd.DataFrame:
    """The failed ``error`` checks: non-empty means ingest of the estimates is blocked."""
    return checks[(checks["severity"] == ERROR) & ~checks["passed"].astype(bool)]


# -- drift: estimates vs the last published delivery -------------------------------------

DRIFT_CHECK = "estimates_vs_previous"


def max_relative_change(results: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Per treatment present in both: ``treatment, estimate, previous_estimate,
    relative_change`` (``|new - old| / max(|old|, 1e-9)``), largest change first."""
    if previous.empty or "estimate" not in results.columns:
        return pd.DataFrame(
            columns=["treatment", "estimate", "previous_estimate", "relative_change"]
        )
    new = results[["treatment", "estimate"]].assign(
        treatment=results["treatment"].astype("string"),
        estimate=pd.to_numeric(results["estimate"], errors="coerce"),
    )
    old = previous[["treatment", "estimate"]].rename(columns={"estimate": "previous_estimate"})
    old = old.assign(
        treatment=old["treatment"].astype("string"),
        previous_estimate=pd.to_numeric(old["previous_estimate"], errors="coerce"),
    )
    both = new.merge(old, on="treatment", how="inner").dropna()
    both["relative_change"] = (both["estimate"] - both["previous_estimate"]).abs() / (
        both["previous_estimate"].abs().clip(lower=1e-9)
    )
    return both.sort_values(["relative_change", "treatment"], ascending=[False, True]).reset_index(
        drop=True
    )


def drift_checks(
    results: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    warn_change: float,
    fail_change: float,
    previous_run_date: str | None = None,
) -> pd.DataFrame:
    """Compare a cohort's ``results`` with ``previous`` (``treatment, estimate`` of the
    cohort's last published delivery of the same program name; empty when there is none).

    One check ``estimates_vs_previous``: passed when no treatment changed by more than
    ``warn_change`` (relative); severity ``error`` when the largest change exceeds
    ``fail_change``, else ``warning``. A first delivery passes with a note."""
    if not 0 <= warn_change <= fail_change:
        raise ValueError(f"need 0 <= warn_change ({warn_change}) <= fail_change ({fail_change})")
    if previous.empty:
        row = (DRIFT_CHECK, WARNING, True, "no previous published delivery of this cohort and "
               "program to compare with (first delivery)")  # fmt: skip
        return pd.DataFrame([row], columns=list(CHECK_COLUMNS))
    changes = max_relative_change(results, previous)
    since = f" since {previous_run_date}" if previous_run_date else ""
    if changes.empty:
        row = (DRIFT_CHECK, WARNING, True, f"no treatment in common with the delivery{since}")
        return pd.DataFrame([row], columns=list(CHECK_COLUMNS))
    top = changes.iloc[0]
    largest = float(top["relative_change"])
    above = int((changes["relative_change"] > warn_change).sum())
    detail = (
        f"{above} of {len(changes)} treatments changed by more than {100 * warn_change:.1f}%"
        f"{since}; largest: {top['treatment']} {top['previous_estimate']:.3f} -> "
        f"{top['estimate']:.3f} ({100 * largest:.1f}%; error above {100 * fail_change:.1f}%)"
    )
    severity = ERROR if largest > fail_change else WARNING
    row = (DRIFT_CHECK, severity, largest <= warn_change, detail)
    return pd.DataFrame([row], columns=list(CHECK_COLUMNS))
