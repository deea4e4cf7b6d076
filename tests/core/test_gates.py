"""The pure parts of the quality gates: golden-case comparison, drift and data-quality
checks, and the spec tables that configure them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.quality import (
    QualityThresholds,
    cohort_figures,
    frame_mixes,
    quality_checks,
)
from pipeline.core.regress import compare, format_diff
from pipeline.core.spec import Tolerance, load_spec
from pipeline.core.validate import blocking_failures, drift_checks
from pipeline.errors import SpecError


def _results(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"treatment": list(values), "estimate": list(values.values())})


def test_tolerance_is_absolute_or_relative() -> None:
    assert Tolerance(abs=0.5).allows(10.4, 10.0)
    assert not Tolerance(abs=0.5).allows(10.6, 10.0)
    assert Tolerance(rel=0.1).allows(109.0, 100.0)
    assert not Tolerance(rel=0.1).allows(111.0, 100.0)
    assert Tolerance(abs=2, rel=0.01).allows(101.5, 100.0)  # abs allows what rel does not
    assert not Tolerance().allows(1.0000001, 1.0)  # no tolerance: exact


def test_compare_reports_each_treatment_and_column() -> None:
    expected = pd.DataFrame(
        {"treatment": ["a", "b", "c"], "estimate": [100.0, 50.0, 10.0], "flag": [False] * 3}
    )
    actual = pd.DataFrame(
        {"treatment": ["a", "b", "x"], "estimate": [100.4, 60.0, 1.0], "flag": [False, True, False]}
    )
    diff = compare(actual, expected, {"estimate": Tolerance(abs=0.5)})
    failed = {(r.treatment, r.column) for r in diff[~diff["ok"]].itertuples()}
    assert failed == {("b", "estimate"), ("b", "flag"), ("c", "*"), ("x", "*")}
    table = format_diff(diff, only_failed=True)
    assert table.splitlines()[0].split() == [
        "TREATMENT", "COLUMN", "EXPECTED", "ACTUAL", "DIFF", "TOLERANCE", "RESULT",
    ]  # fmt: skip
    line = next(line for line in table.splitlines() if line.startswith("b ") and "estimate" in line)
    assert line.split() == ["b", "estimate", "50", "60", "+10", "abs", "0.5", "FAIL"]


def test_drift_warns_then_fails_and_a_first_delivery_passes() -> None:
    previous = _results({"a": 100.0, "b": 200.0})
    steady = drift_checks(
        _results({"a": 105.0, "b": 190.0}), previous, warn_change=0.2, fail_change=0.5
    )
    assert steady.iloc[0]["passed"] and steady.iloc[0]["severity"] == "warning"
    warned = drift_checks(
        _results({"a": 130.0, "b": 200.0}), previous, warn_change=0.2, fail_change=0.5
    )
    row = warned.iloc[0]
    assert (row["check"], row["severity"], bool(row["passed"])) == (
        "estimates_vs_previous",
        "warning",
        False,
    )
    assert "a 100.000 -> 130.000 (30.0%" in row["detail"]
    assert blocking_failures(warned).empty
    failed = drift_checks(
        _results({"a": 100.0, "b": 20.0}), previous, warn_change=0.2, fail_change=0.5,
        previous_run_date="2026-10-22",
    )  # fmt: skip
    assert failed.iloc[0]["severity"] == "error" and not failed.iloc[0]["passed"]
    assert "since 2026-10-22" in failed.iloc[0]["detail"]
    assert len(blocking_failures(failed)) == 1
    first = drift_checks(_results({"a": 1.0}), previous.iloc[0:0], warn_change=0.2, fail_change=0.5)
    assert first.iloc[0]["passed"] and "first delivery" in first.iloc[0]["detail"]


def _figures(rows: int, rejected: int, reasons: dict[str, int]) -> dict:
    summary = {"cohorts": {"c": {"cleansed": rows, "rejected": rejected}}}
    rejections = pd.DataFrame(
        {"cohort": "c", "reasons": [r for r, n in reasons.items() for _ in range(n)]}
    )
    cleansed = pd.DataFrame({"specialty": ["im"] * rows, "region": ["kanto"] * rows})
    return cohort_figures("c", summary, rejections, cleansed, ["speeder", "duplicate"])


FRAME = pd.DataFrame(
    {"specialty": ["im", "cardio"], "region": ["kanto", "kanto"], "n_physicians": [80, 20]}
)


def test_data_quality_against_recent_deliveries_and_the_frame() -> None:
    history = [_figures(100, 5, {"speeder": 5}), _figures(110, 5, {"speeder": 5})]
    checks = quality_checks(
        _figures(104, 6, {"speeder": 6}), history, frame_mixes(FRAME), QualityThresholds()
    )
    assert checks["passed"].all(), checks
    assert list(checks["check"]) == [
        "dq_row_count", "dq_rejection_rate", "dq_rejection_reasons", "dq_specialty_mix",
        "dq_region_mix",
    ]  # fmt: skip
    # A broken export: a third of the rows, most of them rejected as duplicates.
    broken = quality_checks(_figures(35, 65, {"duplicate": 60, "speeder": 5}), history,
                            frame_mixes(FRAME), QualityThresholds())  # fmt: skip
    errors = blocking_failures(broken).set_index("check")["detail"]
    assert set(errors.index) == {"dq_row_count", "dq_rejection_rate", "dq_rejection_reasons"}
    assert "largest: duplicate" in errors["dq_rejection_reasons"]
    # The frame gap: 100 % internists vs 80 % of the frame's physicians.
    strict = QualityThresholds(mix_warn_gap=0.1, mix_fail_gap=0.5, mix_min_rows=50)
    mix = quality_checks(history[0], history, frame_mixes(FRAME), strict).set_index("check")
    assert not mix.loc["dq_specialty_mix", "passed"]
    assert mix.loc["dq_specialty_mix", "severity"] == "warning"
    assert "20.0 points" in mix.loc["dq_specialty_mix", "detail"]


def test_a_first_delivery_passes_with_a_note_but_no_rows_is_an_error() -> None:
    first = quality_checks(
        _figures(50, 1, {"speeder": 1}), [], frame_mixes(FRAME), QualityThresholds()
    )
    assert first["passed"].all()
    assert "first delivery" in first.set_index("check").loc["dq_row_count", "detail"]
    empty = quality_checks(
        _figures(0, 9, {"speeder": 9}), [], frame_mixes(FRAME), QualityThresholds()
    )
    assert list(blocking_failures(empty)["check"]) == ["dq_row_count"]


def test_spec_reads_golden_cases_and_drift_overrides(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec" / "program.toml"
    spec_file.parent.mkdir()
    spec_file.write_text(
        'name = "p"\nversion = "1"\ncommand = ["x"]\n[outputs]\nresults = "r.csv"\n'
        "[drift]\nwarn_change = 0.1\nfail_change = 0.3\n"
        '[[golden]]\nname = "g"\ncohort = "c"\ninput = "in.parquet"\nframe = "f.csv"\n'
        'expected = "e.csv"\n[golden.tolerance]\nestimate = { abs = 1, rel = 0.01 }\n'
    )
    spec = load_spec(spec_file)
    assert spec.drift == {"warn_change": 0.1, "fail_change": 0.3}
    (case,) = spec.golden
    assert case.input == str(spec_file.parent / "in.parquet")
    assert case.tolerance == {"estimate": Tolerance(abs=1.0, rel=0.01)}
    plain = spec_file.read_text().split("[drift]")[0]
    spec_file.write_text(plain)
    assert load_spec(spec_file).fingerprint == spec.fingerprint  # gates do not change results
    spec_file.write_text(plain + "[drift]\nwarn_change = 0.6\nfail_change = 0.3\n")
    with pytest.raises(SpecError, match="warn_change must not exceed fail_change"):
        load_spec(spec_file)
    spec_file.write_text(plain + '[[golden]]\nname = "g"\ncohort = "c"\ninput = "i"\n')
    with pytest.raises(SpecError, match=r"golden\[0\]\.frame: required"):
        load_spec(spec_file)


def test_a_small_cohort_is_not_stopped_by_its_mix() -> None:
    frame = FRAME.assign(n_physicians=[10, 90])  # 10 % internists; the cohort has 100 %
    figures = _figures(20, 1, {"speeder": 1})
    small = quality_checks(figures, [], frame_mixes(frame), QualityThresholds()).set_index("check")
    assert small.loc["dq_specialty_mix", "severity"] == "warning"
    assert "with at least 100 rows" in small.loc["dq_specialty_mix", "detail"]
    large = quality_checks(figures, [], frame_mixes(frame), QualityThresholds(mix_min_rows=10))
    assert list(blocking_failures(large)["check"]) == ["dq_specialty_mix"]
