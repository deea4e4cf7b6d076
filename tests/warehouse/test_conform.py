"""``conform``: a load's frame in its table's column types and order, with the load's own
columns (run date, cohort, variant) added; the caller's frame is left as it was."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import WarehouseError
from pipeline.warehouse.schema import TABLES, conform


def _estimates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "treatment": ["A", "B"],
            "estimate": [1, 2],  # whole numbers: FLOAT64 in the table
            "ci_low": [0.5, 1.5],
            "ci_high": ["1.5", "2.5"],  # text from a CSV: converted
            "program_name": ["toy", "toy"],
            "program_version": ["1.0", "1.0"],
            "n_draws": [100, 100],  # an extra result column: kept, its type inferred
        }
    )


def test_a_load_is_in_its_tables_types_and_order() -> None:
    frame = _estimates()
    before = frame.copy()
    out, schema = conform(
        "model_estimates", frame, run_date=dt.date(2026, 12, 1), cohort="asthma", variant="v1"
    )
    spec = TABLES["model_estimates"]
    assert list(out.columns) == [*spec.column_names, "n_draws"]
    assert schema == [*spec.columns, ("n_draws", "INT64")]
    assert out["run_date"].tolist() == [dt.date(2026, 12, 1)] * 2
    assert out["cohort"].tolist() == ["asthma"] * 2 and out["variant"].tolist() == ["v1"] * 2
    assert out["cohort"].dtype == pd.StringDtype()
    assert out["estimate"].dtype == np.float64 and out["ci_high"].tolist() == [1.5, 2.5]
    assert out["n_draws"].dtype == pd.Int64Dtype()
    assert out["program_fingerprint"].isna().all()  # optional: empty, not missing
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched


def test_a_load_with_a_column_its_table_does_not_take_is_refused() -> None:
    frame = pd.DataFrame({"check": ["x"], "severity": ["error"], "passed": [True],
                          "detail": [""], "program_name": ["toy"], "program_version": ["1"],
                          "surprise": [1]})  # fmt: skip
    with pytest.raises(WarehouseError, match=r"validation_checks: unexpected columns surprise"):
        conform("validation_checks", frame, run_date=dt.date(2026, 12, 1), cohort="asthma")
    with pytest.raises(WarehouseError, match=r"validation_checks\.passed: cannot convert"):
        conform(
            "validation_checks",
            frame.drop(columns="surprise").assign(passed=["maybe"]),
            run_date=dt.date(2026, 12, 1),
            cohort="asthma",
        )
