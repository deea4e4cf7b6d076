"""IngestSurvey and IngestResults: load a run date's data into the warehouse.

Each load replaces the rows of its (run_date, cohort) — of its program variant, for the
results — in one transaction, so re-running never duplicates rows and one variant never
removes another's. The output is a small marker file per warehouse with the counts; a
marker is trusted only while the warehouse still holds those rows (``complete``), so
"done" always means "in the warehouse".
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from datetime import UTC, datetime

import luigi
import pandas as pd

from pipeline import faults, metrics, storage
from pipeline.core.validate import blocking_failures
from pipeline.errors import PipelineError, ValidationFailed
from pipeline.manifest import run_rows
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
    def warehouse_kind(self) -> str:
        """duckdb or bigquery: safe to show and tag (the URI may name projects or paths)."""
        return self.warehouse.split(":", 1)[0]

    @property
    def warehouse_id(self) -> str:
        return warehouse_id(self.warehouse)

    # What the marker claims: rows per table of this cohort (None: every cohort) and
    # variant ('' outside the variant tables).
    marker_cohort: str | None = None
    marker_variant: str = ""

    def write_marker(self, counts: dict[str, int]) -> None:
        forget_loaded(self.warehouse, self.run_date)
        storage.write_json(
            self.output().path,
            {
                "warehouse": self.warehouse,
                "cohort": self.marker_cohort,
                "variant": self.marker_variant,
                "rows": counts,
                "at": datetime.now(UTC),
            },
        )

    def complete(self) -> bool:
        """The marker exists and the warehouse still holds the rows it counts (one count
        query per warehouse and run date, shared by every cohort's task: ``loaded``)."""
        target = self.output()
        if not target.exists():
            return False
        try:
            marker = storage.read_json(target.path)
        except (OSError, ValueError):
            return False
        if "variant" not in marker:  # written before markers were checked: load again
            return False
        # Cached counts may predate a load by another process (a luigi worker): a marker
        # they do not confirm is checked once more against fresh counts.
        return self._holds(marker, loaded(self.warehouse, self.run_date)) or self._holds(
            marker, loaded(self.warehouse, self.run_date, fresh=True)
        )

    def _holds(self, marker: dict, counts: dict[tuple[str | None, str, str], int]) -> bool:
        for table, rows in (marker.get("rows") or {}).items():
            if self.marker_cohort is None:
                have = sum(n for (_, _, t), n in counts.items() if t == table)
            else:
                have = counts.get((self.marker_cohort, self.marker_variant, table), 0)
            if have != rows:
                return False
        return True


# (warehouse URI, run date) -> (when read, {(cohort, variant, table): rows}). Scheduling
# asks complete() of every cohort × variant: one query answers them all.
LOADED_TTL_SECONDS = 10.0
_loaded: dict[tuple[str, dt.date], tuple[float, dict[tuple[str | None, str, str], int]]] = {}
_loaded_lock = threading.Lock()
_asking: dict[tuple[str, dt.date], threading.Lock] = {}  # one count query at a time each


def loaded(
    warehouse: str, run_date: dt.date, *, fresh: bool = False
) -> dict[tuple[str | None, str, str], int]:
    """Rows per (cohort, variant, table) of ``run_date`` in ``warehouse``, at most
    LOADED_TTL_SECONDS old unless ``fresh`` (an unreachable or empty warehouse holds
    nothing). Threads asking at once share one query: ``pipeline status`` checks every
    cohort's ingest on sixteen threads, and each would have queried the warehouse (on
    BigQuery, a query job each); a ``fresh`` answer is one whose query started after it
    was asked for."""
    key = (warehouse, run_date)
    asked = time.monotonic()
    with _loaded_lock:
        gate = _asking.setdefault(key, threading.Lock())
    with gate:
        with _loaded_lock:
            cached = _loaded.get(key)
        if cached and (
            cached[0] >= asked or (not fresh and asked - cached[0] < LOADED_TTL_SECONDS)
        ):
            return cached[1]
        started = time.monotonic()
        try:
            frame = open_warehouse(warehouse).loaded_counts(run_date)
        except PipelineError:
            frame = pd.DataFrame(columns=["cohort", "variant", "table_name", "row_count"])
        counts = {
            (None if pd.isna(r.cohort) else str(r.cohort), str(r.variant), str(r.table_name)): int(
                r.row_count
            )
            for r in frame.itertuples()
        }
        with _loaded_lock:
            _loaded[key] = (started, counts)
        return counts


def forget_loaded(warehouse: str | None = None, run_date: dt.date | None = None) -> None:
    """Drop cached counts (of one warehouse and date, or all): the next ``loaded`` asks."""
    with _loaded_lock:
        for key in list(_loaded):
            if warehouse is None or key == (warehouse, run_date):
                del _loaded[key]


class IngestSurvey(WarehouseTask):
    """Loads ``cleanse/cohorts/*.parquet`` into ``survey_responses`` and
    ``rejections.parquet`` into ``survey_rejections``, replacing the run date's rows.
    Needs only cleansing: it loads while the programs run (after the data checks, which
    have the programs' priority), so QA can start before any model finishes."""

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
        rejections = storage.read_parquet(self.input()["rejections"].path)
        self.report(f"loading {len(responses):,} responses into {self.warehouse_kind}", 50)
        counts = open_warehouse(self.warehouse).replace(
            self.run_date,
            None,
            {
                "survey_responses": responses,
                "survey_rejections": rejections,
                # QA compares the warehouse with what cleansing counted and the frame.
                **survey_reference_tables(
                    storage.read_json(self.input()["summary"].path),
                    pd.read_csv(io.BytesIO(storage.read_bytes(self.input()["frame"].path))),
                ),
            },
        )
        faults.point("ingest.loaded")
        self.write_marker(counts)
        metrics.record_ingest(counts, self.warehouse)
        self.report(
            f"{counts['survey_responses']:,} responses, {counts['survey_rejections']:,} "
            f"rejections loaded",
            progress=100,
        )


class IngestResults(CohortTask, WarehouseTask):
    """Loads one cohort's ``model_estimates``, ``validation_checks`` (its data-quality
    checks, then its result and drift checks) and ``pipeline_runs`` (every attempt, with
    its run manifest) of one program variant into the warehouse, replacing that variant's
    rows only. A failed error check blocks the estimates: the
    checks and runs are still loaded so QA sees why, and the task fails."""

    def requires(self) -> ValidateResults:
        return ValidateResults(**self.cohort_params(), warehouse=self.warehouse)

    @property
    def marker_cohort(self) -> str:  # type: ignore[override]
        return self.cohort

    @property
    def marker_variant(self) -> str:  # type: ignore[override]
        return self.spec.slug

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target(
            self.layout.results_marker(self.cohort, self.spec.slug, self.warehouse_id)
        )

    def run(self) -> None:
        self.report("reading results, checks and run records", progress=0)
        spec, layout = self.spec, self.layout
        program = {
            "program_name": spec.name,
            "program_version": spec.version,
            "program_fingerprint": spec.fingerprint,
        }
        checks = storage.read_parquet(self.input().path)
        # The cohort's data-quality checks (CheckData) land next to its result checks.
        quality = layout.quality(self.cohort)
        if storage.exists(quality):
            checks = pd.concat([storage.read_parquet(quality), checks], ignore_index=True)
        checks = checks.assign(**program)
        # Every attempt's run.json with its run manifest (pipeline/manifest.py).
        runs = pd.DataFrame(run_rows(layout, self.cohort, spec))
        blocking = blocking_failures(checks)
        estimates = storage.read_parquet(layout.model_results(self.cohort, spec.slug))
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
            variant=spec.slug,
        )
        forget_loaded(self.warehouse, self.run_date)
        metrics.record_ingest(counts, self.warehouse, self.cohort)
        if len(blocking):
            details = "; ".join(f"{r.check}: {r.detail}" for r in blocking.itertuples())
            raise ValidationFailed(
                f"cohort {self.cohort}: results not ingested, {len(blocking)} error check(s) "
                f"failed: {details}. Fix the program or its input and re-run from the model "
                "step."
            )
        faults.point("ingest.loaded")
        self.write_marker(counts)
        self.report(f"{counts['model_estimates']} estimates loaded", progress=100)
