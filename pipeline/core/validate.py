"""Plausibility checks of a program's results, returned as data (one row per check).

A failed ``error`` check blocks ingest of the cohort's estimates; a ``warning`` is
recorded and shown but does not block.
"""

from __future__ import annotations

import pandas as pd

REQUIRED_COLUMNS = ("treatment", "estimate", "ci_low", "ci_high")
CHECK_COLUMNS = ("check", "severity", "passed", "detail")
ERROR, WARNING = "error", "warning"
CheckRow = tuple[str, str, bool, str]  # a row of CHECK_COLUMNS
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
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    checks = _table_checks(results, missing)
    if not missing:
        numbers = results[["estimate", "ci_low", "ci_high"]].apply(pd.to_numeric, errors="coerce")
        treatment = results["treatment"].astype("string")
        bad_number = numbers.isna().any(axis=1) | treatment.isna()
        checks += _number_checks(numbers, treatment, bad_number)
        checks += _treatment_checks(treatment, treatments)
        checks.append(_interval_width_check(numbers, treatment, bad_number))
    return pd.DataFrame(checks, columns=list(CHECK_COLUMNS))


def _check(check: str, severity: str, found: pd.Series, fails: str, holds: str) -> CheckRow:
    """A check that passes when nothing is ``found``, else names examples after ``fails``."""
    return (check, severity, found.empty, f"{fails}: {_examples(found)}" if len(found) else holds)


def _table_checks(results: pd.DataFrame, missing: list[str]) -> list[CheckRow]:
    """Reads the columns and the row count; decides whether the table has every required
    column (``missing`` ones named) and any row."""
    return [
        (
            "required_columns",
            ERROR,
            not missing,
            f"missing columns: {', '.join(missing)}" if missing else "all required columns present",
        ),
        ("not_empty", ERROR, len(results) > 0, f"{len(results)} result rows"),
    ]


def _number_checks(
    numbers: pd.DataFrame, treatment: pd.Series, bad_number: pd.Series
) -> list[CheckRow]:
    """Reads each row's estimate and interval; decides whether every one is present and
    numeric, none is negative, and the interval holds the estimate."""
    outside = (
        ~((numbers["ci_low"] <= numbers["estimate"]) & (numbers["estimate"] <= numbers["ci_high"]))
        & ~bad_number
    )
    return [
        _check(
            "no_missing_values",
            ERROR,
            treatment.fillna("<none>")[bad_number],
            "missing or non-numeric values for",
            "every treatment has estimate, ci_low and ci_high",
        ),
        _check(
            "non_negative",
            ERROR,
            treatment[(numbers < 0).any(axis=1)],
            "negative values for",
            "no negative values",
        ),
        _check(
            "ci_contains_estimate",
            ERROR,
            treatment[outside],
            "ci_low <= estimate <= ci_high fails for",
            "ci_low <= estimate <= ci_high for every row",
        ),
    ]


def _treatment_checks(treatment: pd.Series, treatments: list[str]) -> list[CheckRow]:
    """Reads the result rows' treatments and the survey's; decides whether each treatment
    has one row, every survey treatment has a result, and no result is for another one."""
    present = set(treatment.dropna())
    return [
        _check(
            "unique_treatments",
            ERROR,
            pd.Series(treatment[treatment.duplicated()].dropna().unique()),
            "treatments appear more than once",
            "one row per treatment",
        ),
        _check(
            "treatments_complete",
            ERROR,
            pd.Series([t for t in treatments if t not in present], dtype=object),
            "no result for",
            f"all {len(treatments)} treatments present",
        ),
        _check(
            "no_unknown_treatments",
            WARNING,
            pd.Series(sorted(present - set(treatments)), dtype=object),
            "treatments not in the survey",
            "every result treatment is in the survey",
        ),
    ]


def _interval_width_check(
    numbers: pd.DataFrame, treatment: pd.Series, bad_number: pd.Series
) -> CheckRow:
    """Reads each row's estimate and interval; decides whether any interval is suspiciously
    wide (a warning: wide is not wrong)."""
    width = numbers["ci_high"] - numbers["ci_low"]
    wide = (width > WIDE_INTERVAL_RATIO * numbers["estimate"].abs()) & ~bad_number
    return _check(
        "interval_width",
        WARNING,
        treatment[wide],
        f"interval wider than {WIDE_INTERVAL_RATIO:g}x the estimate for",
        f"every interval within {WIDE_INTERVAL_RATIO:g}x the estimate",
    )


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
