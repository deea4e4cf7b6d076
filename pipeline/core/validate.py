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
