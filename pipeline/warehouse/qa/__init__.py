"""The analysts' QA checks: BigQuery-dialect ``.sql`` files in this folder, run as they are
on BigQuery and through sqlglot's transpiler on DuckDB.

Each file is one check. It reads the staging dataset (unqualified tables) and, where it
compares with what clients already have, the published one (```{published}.TABLE```);
it takes the parameters ``@run_date``, ``@warn_change`` and ``@fail_change`` and returns
rows ``check, cohort, severity, passed, detail``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from pipeline import config
from pipeline.errors import WarehouseError
from pipeline.warehouse import Warehouse
from pipeline.warehouse.shared import sql_names, sql_text

RESULT_COLUMNS = ("check", "cohort", "severity", "passed", "detail")


@dataclass(frozen=True)
class Thresholds:
    """Relative change of an estimate vs the previous published delivery (0.2 = 20 %)
    above which ``estimates_vs_previous`` warns, and above which it fails."""

    warn_change: float = 0.2
    fail_change: float = 0.5

    @classmethod
    def from_config(cls) -> Thresholds:
        """``[warehouse] qa_warn_change`` and ``qa_fail_change`` in luigi.cfg."""
        return cls(
            warn_change=config.get_float("warehouse", "qa_warn_change", cls.warn_change),
            fail_change=config.get_float("warehouse", "qa_fail_change", cls.fail_change),
        )


def check_files() -> list[str]:
    """The QA .sql files, as package paths (``qa/NAME.sql``), in the order they run."""
    return sql_names("qa")


def run_qa(
    warehouse: Warehouse, run_date: dt.date, thresholds: Thresholds | None = None
) -> pd.DataFrame:
    """Run every QA check for ``run_date``; one row per check and cohort
    (``RESULT_COLUMNS``), in file order then cohort order."""
    thresholds = thresholds or Thresholds.from_config()
    if not 0 <= thresholds.warn_change <= thresholds.fail_change:
        raise WarehouseError(
            f"QA thresholds: need 0 <= warn_change ({thresholds.warn_change}) <= "
            f"fail_change ({thresholds.fail_change})"
        )
    params = {
        "run_date": run_date,
        "warn_change": float(thresholds.warn_change),
        "fail_change": float(thresholds.fail_change),
    }
    frames = []
    for order, name in enumerate(check_files()):
        result = warehouse.query(sql_text(name, published=warehouse.published_dataset), params)
        missing = [c for c in RESULT_COLUMNS if c not in result.columns]
        if missing:
            raise WarehouseError(
                f"pipeline/warehouse/{name}: result lacks columns {', '.join(missing)}"
            )
        frames.append(result[list(RESULT_COLUMNS)].assign(_order=order))
    results = pd.concat(frames, ignore_index=True)
    results["passed"] = results["passed"].astype(bool)
    for column in ("check", "cohort", "severity", "detail"):
        results[column] = results[column].astype("string")
    results = results.sort_values(["_order", "cohort"], na_position="first", kind="stable")
    return results.drop(columns="_order").reset_index(drop=True)


def failures(results: pd.DataFrame, *, strict: bool = False) -> pd.DataFrame:
    """The failed checks that fail QA: severity ``error`` (any severity when strict)."""
    failed = results[~results["passed"]]
    return failed if strict else failed[failed["severity"] == "error"]
