"""Golden-case comparison: a program's results against the expected ones, per treatment
and column, within the spec's tolerances. Pure: ``pipeline.regress`` runs the program."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from pipeline.core.spec import Tolerance

DIFF_COLUMNS = ("treatment", "column", "expected", "actual", "diff", "tolerance", "ok")


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _describe(tolerance: Tolerance | None) -> str:
    if tolerance is None:
        return "exact"
    parts = [f"abs {tolerance.abs:g}"] if tolerance.abs else []
    parts += [f"rel {tolerance.rel:g}"] if tolerance.rel else []
    return " or ".join(parts) or "exact"


def compare(
    actual: pd.DataFrame, expected: pd.DataFrame, tolerance: Mapping[str, Tolerance]
) -> pd.DataFrame:
    """One row per treatment and expected column (``DIFF_COLUMNS``). Numbers pass within
    the column's tolerance (exact without one), other values when equal as text. A
    treatment or column missing from the results, or a treatment not expected, fails."""
    rows: list[tuple[object, ...]] = []
    columns = [c for c in expected.columns if c != "treatment"]
    if "treatment" in actual.columns:
        got = actual.assign(treatment=actual["treatment"].astype(str))
        got = got.drop_duplicates("treatment").set_index("treatment")
    else:
        got = pd.DataFrame()
    for _, row in expected.iterrows():
        treatment = str(row["treatment"])
        if treatment not in got.index:
            rows.append((treatment, "*", "present", "missing", "", "", False))
            continue
        for column in columns:
            want = row[column]
            if column not in got.columns:
                rows.append((treatment, column, str(want), "missing", "", "", False))
                continue
            have = got.loc[treatment, column]
            rule = tolerance.get(column)
            a, e = _number(have), _number(want)
            if a is not None and e is not None and not isinstance(want, bool):
                diff = a - e
                ok = (rule or Tolerance()).allows(a, e)
                rows.append(
                    (treatment, column, f"{e:g}", f"{a:g}", f"{diff:+.6g}", _describe(rule), ok)
                )
            else:
                ok = str(have) == str(want)
                rows.append((treatment, column, str(want), str(have), "", "exact", ok))
    for treatment in sorted(set(got.index) - {str(t) for t in expected["treatment"]}):
        rows.append((treatment, "*", "absent", "present", "", "", False))
    return pd.DataFrame(rows, columns=list(DIFF_COLUMNS))


def format_diff(diff: pd.DataFrame, *, only_failed: bool = False) -> str:
    """The diff as an aligned text table, one line per treatment and column."""
    shown = diff[~diff["ok"]] if only_failed else diff
    header = ("TREATMENT", "COLUMN", "EXPECTED", "ACTUAL", "DIFF", "TOLERANCE", "RESULT")
    lines = [
        (str(r.treatment), str(r.column), str(r.expected), str(r.actual), str(r.diff),
         str(r.tolerance), "ok" if r.ok else "FAIL")
        for r in shown.itertuples()
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )
