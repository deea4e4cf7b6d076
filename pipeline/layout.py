"""The storage layout: every path of a delivery, derived in one place.

Everything a run date produces lives under ``<storage root>/<run_date>/`` (a local
directory or ``s3://bucket/prefix``), so a laptop pointed at production storage sees what
the worker saw::

    cleanse/   inputs.json frame.csv rejections.parquet summary.json cohorts/<code>.parquet
    quality/<cohort>.parquet   data-quality checks (written only when no error check failed)
    model/<cohort>/<slug>/     results.parquet run.json attempts/<attempt>/{job.json,out/,run.json}
    validate/<cohort>/<slug>/  checks.parquet
    ingest/_survey/<warehouse id>.json   ingest/<cohort>/<slug>/<warehouse id>.json
    logs/tasks/<task id>.log|.json       a task's own log and its timing record
    logs/failures/<task id>.txt          why a task last failed
    logs/programs/<cohort>/<slug>-<attempt>.log   a program run's output (or its log tail)
    logs/runs/<time>-<pid>.log           luigi's own log of one `pipeline run`

Across dates: ``<storage root>/quality-history/<cohort>/<run_date>.json`` (the figures of
each delivery that passed the data-quality gate, which later deliveries compare with) and
``<storage root>/regress/<slug>/result.json`` (the last ``pipeline regress`` of a program).

``<slug>`` is the program spec's ``name-version-fingerprint``: change the spec and every
downstream path changes with it. Tasks build their ``output()`` from a ``Layout``;
``pipeline status``, ``rerun`` and ``report`` ask the tasks, never rebuild paths.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipeline import config, storage


def regress_path(root: str, slug: str, *parts: str) -> str:
    """``pipeline regress`` of one program build (across dates): ``result.json`` and the
    case runs under ``cases/<name>/``."""
    return storage.join(root.rstrip("/"), "regress", slug, *parts)


@dataclass(frozen=True)
class Layout:
    """The paths of one run date under one storage root."""

    root: str
    run_date: str  # YYYY-MM-DD

    @classmethod
    def of(cls, run_date: dt.date | str, root: str | None = None) -> Layout:
        date = run_date.isoformat() if isinstance(run_date, dt.date) else str(run_date)
        return cls((root or config.storage_root()).rstrip("/"), date)

    @property
    def base(self) -> str:
        return storage.join(self.root, self.run_date)

    def path(self, *parts: str) -> str:
        return storage.join(self.base, *parts)

    # -- cleansing -----------------------------------------------------------------------
    def cleanse(self, name: str) -> str:
        return self.path("cleanse", name)

    def cohort_input(self, cohort: str) -> str:
        return self.path("cleanse", "cohorts", f"{cohort}.parquet")

    def cohort_inputs(self) -> str:
        return self.path("cleanse", "cohorts")

    # -- data quality (before any program runs) --------------------------------------------
    def quality(self, cohort: str) -> str:
        return self.path("quality", f"{cohort}.parquet")

    def quality_history(self, cohort: str) -> str:
        """Across run dates: one ``<run_date>.json`` of figures per passed delivery."""
        return storage.join(self.root, "quality-history", cohort)

    def quality_figures(self, cohort: str) -> str:
        return storage.join(self.quality_history(cohort), f"{self.run_date}.json")

    # -- program runs --------------------------------------------------------------------
    def model(self, cohort: str, slug: str, *parts: str) -> str:
        return self.path("model", cohort, slug, *parts)

    def attempts(self, cohort: str, slug: str) -> str:
        return self.model(cohort, slug, "attempts")

    def attempt(self, cohort: str, slug: str, attempt: str, *parts: str) -> str:
        return self.model(cohort, slug, "attempts", attempt, *parts)

    def checks(self, cohort: str, slug: str) -> str:
        return self.path("validate", cohort, slug, "checks.parquet")

    # -- warehouse markers ---------------------------------------------------------------
    def survey_marker(self, warehouse_id: str) -> str:
        return self.path("ingest", "_survey", f"{warehouse_id}.json")

    def results_marker(self, cohort: str, slug: str, warehouse_id: str) -> str:
        return self.path("ingest", cohort, slug, f"{warehouse_id}.json")

    # -- logs ----------------------------------------------------------------------------
    def logs(self, *parts: str) -> str:
        return self.path("logs", *parts)

    def task_log(self, task_id: str) -> str:
        return self.logs("tasks", f"{task_id}.log")

    def timing(self, task_id: str) -> str:
        return self.logs("tasks", f"{task_id}.json")

    def failure(self, task_id: str) -> str:
        return self.logs("failures", f"{task_id}.txt")

    def program_log(self, cohort: str, slug: str, attempt: str) -> str:
        return self.logs("programs", cohort, f"{slug}-{attempt}.log")

    def timings(self) -> str:
        return self.logs("tasks")

    def run_log(self, stamp: str) -> str:
        """luigi's own log of one ``pipeline run`` (DEBUG lines, tracebacks)."""
        return self.logs("runs", f"{stamp}.log")
