"""IngestSurvey and IngestResults: load a run date's data into the warehouse.

Each load replaces the rows of its (run_date, cohort) in one transaction, so re-running
never duplicates rows. The output is a small marker file per warehouse with the counts.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import luigi
import pandas as pd

from pipeline import metrics, storage
from pipeline.core.validate import blocking_failures
from pipeline.errors import ValidationFailed
from pipeline.tasks.base import CohortTask, RunDateTask
from pipeline.tasks.cleanse import CleanseSurvey
from pipeline.tasks.params import RawParameter, WarehouseParameter
from pipeline.tasks.validate import ValidateResults
from pipeline.warehouse import open_warehouse, warehouse_id
from pipeline.warehouse.schema import survey_reference_tables


class WarehouseTask(RunDateTask):
    warehouse = WarehouseParameter(
        default="", description="Warehouse URI (default: [pipeline] warehouse)."
    )

    @property
    def resources(self) -> dict[str, int]:
        # An embedded DuckDB file takes one writer at a time.
        return {"duckdb_writer": 1} if self.warehouse.startswith("duckdb:") else {}

    @property
    def warehouse_kind(self) -> str:
        """duckdb or bigquery: safe to show and tag (the URI may name projects or paths)."""
        return self.warehouse.split(":", 1)[0]

    @property
    def warehouse_id(self) -> str:
        return warehouse_id(self.warehouse)

    def write_marker(self, counts: dict[str, int]) -> None:
        storage.write_json(
            self.output().path,
            {"warehouse": self.warehouse, "rows": counts, "at": datetime.now(UTC)},
        )


class IngestSurvey(WarehouseTask):
    """Loads ``cleanse/cohorts/*.parquet`` into ``survey_responses`` and
    ``rejections.parquet`` into ``survey_rejections``, replacing the run date's rows.
    Runs as soon as cleansing is done, so QA can start before any model finishes."""

    raw = RawParameter(default="", description="Raw export directory (for cleansing).")

    def requires(self) -> CleanseSurvey:
        return CleanseSurvey(run_date=self.run_date, raw=self.raw)

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target(self.layout.survey_marker(self.warehouse_id))

    def run(self) -> None:
        self.report("reading cleansed rows and rejections", progress=0)
        parts = [
            storage.read_parquet(uri)
            for uri in storage.listdir(self.layout.cohort_inputs())
            if uri.endswith(".parquet")
        ]
        responses = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        rejections = storage.read_parquet(self.input()["rejections.parquet"].path)
        self.report(f"loading {len(responses):,} responses into {self.warehouse_kind}", 50)
        counts = open_warehouse(self.warehouse).replace(
            self.run_date,
            None,
            {
                "survey_responses": responses,
                "survey_rejections": rejections,
                # QA compares the warehouse with what cleansing counted and the frame.
                **survey_reference_tables(
                    storage.read_json(self.input()["summary.json"].path),
                    pd.read_csv(io.BytesIO(storage.read_bytes(self.input()["frame.csv"].path))),
                ),
            },
        )
        self.write_marker(counts)
        metrics.record_ingest(counts, self.warehouse)
        self.report(
            f"{counts['survey_responses']:,} responses, {counts['survey_rejections']:,} "
            f"rejections loaded",
            progress=100,
        )


class IngestResults(CohortTask, WarehouseTask):
    """Loads one cohort's ``model_estimates``, ``validation_checks`` and ``pipeline_runs``
    (every attempt) into the warehouse. A failed error check blocks the estimates: the
    checks and runs are still loaded so QA sees why, and the task fails."""

    def requires(self) -> ValidateResults:
        return ValidateResults(**self.cohort_params())

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target(
            self.layout.results_marker(self.cohort, self.spec.slug, self.warehouse_id)
        )

    def run(self) -> None:
        self.report("reading results, checks and run records", progress=0)
        spec, layout = self.spec, self.layout
        program = {"program_name": spec.name, "program_version": spec.version}
        checks = storage.read_parquet(self.input().path).assign(**program)
        runs = pd.DataFrame(
            [
                storage.read_json(uri)
                for uri in storage.listdir(layout.attempts(self.cohort, spec.slug))
                if uri.endswith("/run.json")
            ]
        )
        blocking = blocking_failures(checks)
        estimates = storage.read_parquet(layout.model(self.cohort, spec.slug, "results.parquet"))
        if len(blocking):
            estimates = estimates.iloc[0:0]
        self.report(f"loading {len(estimates)} estimates into {self.warehouse_kind}", 50)
        counts = open_warehouse(self.warehouse).replace(
            self.run_date,
            self.cohort,
            {
                "model_estimates": estimates.assign(**program),
                "validation_checks": checks,
                "pipeline_runs": runs,
            },
        )
        metrics.record_ingest(counts, self.warehouse, self.cohort)
        if len(blocking):
            details = "; ".join(f"{r.check}: {r.detail}" for r in blocking.itertuples())
            raise ValidationFailed(
                f"cohort {self.cohort}: results not ingested, {len(blocking)} error check(s) "
                f"failed: {details}. Fix the program or its input and re-run from the model "
                "step."
            )
        self.write_marker(counts)
        self.report(f"{counts['model_estimates']} estimates loaded", progress=100)
