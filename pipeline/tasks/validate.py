"""ValidateResults: plausibility and drift checks of one cohort's results, written as data."""

from __future__ import annotations

import io

import luigi
import pandas as pd
import pyarrow.parquet as pq

from pipeline import metrics, storage
from pipeline.core.validate import (
    blocking_failures,
    drift_checks,
    max_relative_change,
    validate_results,
)
from pipeline.tasks.base import CohortTask
from pipeline.tasks.model import RunModel
from pipeline.tasks.params import WarehouseParameter
from pipeline.warehouse import open_warehouse
from pipeline.warehouse.qa import Thresholds


def drift_thresholds(spec_drift: dict[str, float]) -> Thresholds:
    """``[warehouse] qa_warn_change`` / ``qa_fail_change``, overridden by the program
    spec's ``[drift]`` table."""
    configured = Thresholds.from_config()
    return Thresholds(
        warn_change=spec_drift.get("warn_change", configured.warn_change),
        fail_change=spec_drift.get("fail_change", configured.fail_change),
    )


class ValidateResults(CohortTask):
    """Reads ``model/<cohort>/<slug>/results.parquet`` and the cohort's treatments (its
    cleansed share columns), and the cohort's last published estimates of the same
    program name from the warehouse; writes ``validate/<cohort>/<slug>/checks.parquet``.
    Failed checks do not fail this task: ``IngestResults`` records them and blocks on
    errors."""

    # Where the previous published delivery is read from; not part of the identity (the
    # checks are a property of the results, the warehouse only lends the comparison).
    warehouse = WarehouseParameter(
        default="",
        significant=False,
        description="Warehouse URI (default: [pipeline] warehouse).",
    )

    def requires(self) -> RunModel:
        return RunModel(**self.cohort_params())

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target(self.layout.checks(self.cohort, self.spec.slug))

    def run(self) -> None:
        self.report("checking results", progress=0)
        results = storage.read_parquet(self.input()["results"].path)
        schema = pq.read_schema(
            io.BytesIO(storage.read_bytes(self.layout.cohort_input(self.cohort)))
        )
        treatments = [n.removeprefix("share_") for n in schema.names if n.startswith("share_")]
        checks = validate_results(results, treatments)
        self.report("comparing with the last published delivery", progress=50)
        previous = open_warehouse(self.warehouse).previous_estimates(
            self.run_date, self.cohort, self.spec.name
        )
        thresholds = drift_thresholds(self.spec.drift)
        previous_date = str(previous["run_date"].iloc[0]) if len(previous) else None
        if {"treatment", "estimate"} <= set(results.columns):
            checks = pd.concat(
                [
                    checks,
                    drift_checks(
                        results,
                        previous,
                        warn_change=thresholds.warn_change,
                        fail_change=thresholds.fail_change,
                        previous_run_date=previous_date,
                    ),
                ],
                ignore_index=True,
            )
            changes = max_relative_change(results, previous)
            largest = float(changes["relative_change"].iloc[0]) if len(changes) else 0.0
            metrics.record_drift(self.cohort, largest)
        storage.write_parquet(self.output().path, checks)
        metrics.record_validation(self.cohort, checks.to_dict("records"))
        failed = checks[~checks["passed"]]
        errors = len(blocking_failures(checks))
        self.report(
            f"{len(checks) - len(failed)}/{len(checks)} checks passed"
            + (f"; {errors} error(s): {', '.join(failed['check'])}" if len(failed) else ""),
            progress=100,
        )
