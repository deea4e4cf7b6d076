import pandas as pd
import pytest

from pipeline.core.validate import blocking_failures, validate_results

TREATMENTS = ["a", "b"]


def good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "treatment": ["a", "b"],
            "estimate": [10.0, 20.0],
            "ci_low": [8.0, 15.0],
            "ci_high": [12.0, 26.0],
            "segment_extra": [1, 2],
        }
    )


def outcome(checks: pd.DataFrame, name: str) -> tuple[bool, str]:
    row = checks.set_index("check").loc[name]
    return bool(row["passed"]), str(row["detail"])


def test_good_results_pass_every_check() -> None:
    checks = validate_results(good(), TREATMENTS)
    assert list(checks.columns) == ["check", "severity", "passed", "detail"]
    assert checks["passed"].all(), checks
    assert blocking_failures(checks).empty


@pytest.mark.parametrize(
    ("mutate", "check", "culprit"),
    [
        (lambda df: df.assign(estimate=[10.0, None]), "no_missing_values", "b"),
        (lambda df: df.assign(ci_low=[-1.0, 15.0]), "non_negative", "a"),
        (lambda df: df.assign(ci_high=[9.0, 26.0]), "ci_contains_estimate", "a"),
        (lambda df: df.iloc[[0]], "treatments_complete", "b"),
        (lambda df: pd.concat([df, df.iloc[[1]]]), "unique_treatments", "b"),
        (lambda df: df.iloc[0:0], "not_empty", "0 result rows"),
    ],
)
def test_each_error_check_names_the_culprit(mutate, check: str, culprit: str) -> None:
    checks = validate_results(mutate(good()), TREATMENTS)
    passed, detail = outcome(checks, check)
    assert not passed
    assert culprit in detail
    assert check in set(blocking_failures(checks)["check"])


def test_missing_columns_fail_without_crashing() -> None:
    checks = validate_results(good().drop(columns=["ci_high"]), TREATMENTS)
    passed, detail = outcome(checks, "required_columns")
    assert not passed and "ci_high" in detail
    assert not blocking_failures(checks).empty


@pytest.mark.parametrize(
    ("mutate", "check"),
    [
        (
            lambda df: pd.concat(
                [
                    df,
                    pd.DataFrame(
                        {"treatment": ["z"], "estimate": [1.0], "ci_low": [0.5], "ci_high": [1.5]}
                    ),
                ]
            ),
            "no_unknown_treatments",
        ),
        (lambda df: df.assign(ci_high=[100.0, 26.0]), "interval_width"),
    ],
)
def test_warnings_do_not_block(mutate, check: str) -> None:
    checks = validate_results(mutate(good()), TREATMENTS)
    assert outcome(checks, check)[0] is False
    assert blocking_failures(checks).empty
