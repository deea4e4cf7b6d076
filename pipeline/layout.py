"""The storage layout: every path of a delivery, derived in one place.

Everything a run date produces lives under ``<storage root>/<run_date>/`` (a local
directory or ``s3://bucket/prefix``), so a laptop pointed at production storage sees what
the worker saw::

    cleanse/   inputs.json frame.csv rejections.parquet summary.json cohorts/<code>.parquet
    quality/<cohort>.parquet   data-quality checks (written only when no error check failed)
    model/<cohort>/<slug>/     results.parquet run.json
        attempts/<attempt>/    job.json [input.csv] out/ (the program's files, manifest.json)
                               run.json abandoned/<n>.json
    validate/<cohort>/<slug>/  checks.parquet
    ingest/_survey/<warehouse id>.json   ingest/<cohort>/<slug>/<warehouse id>.json
    logs/tasks/<task id>.log|.json       a task's own log and its timing record
    logs/failures/<task id>.txt          why a task last failed
    logs/programs/<cohort>/<slug>-<attempt>.log   a program run's output (or its log tail)
    logs/runs/<time>-<pid>.log           luigi's own log of one `pipeline run`
    .run.lock                            held by the local `pipeline run` of the date

Across dates: ``<storage root>/quality-history/<cohort>/<run_date>.json`` (the figures of
each delivery that passed the data-quality gate, which later deliveries compare with) and
``<storage root>/regress/<slug>/result.json`` (the last ``pipeline regress`` of a program,
its case runs under ``cases/<name>/``, each laid out as a run date). Cloud executors keep
their leases under ``<storage root>/_leases/`` (``pipeline.executors.lease``).

On this machine, not under the storage root: ``$PIPELINE_HOME/logs/spool/<bucket>/<key>``
(the local copy of a log that lives on S3) and ``$PIPELINE_HOME/locks/`` (the run lock of
a date on an S3 root).

``<slug>`` is the program spec's ``name-version-fingerprint``: change the spec and every
downstream path changes with it. Tasks build their ``output()`` from a ``Layout``;
``pipeline status``, ``rerun`` and ``report`` ask the tasks, never rebuild paths. This
module is the only one that names a file the tasks and executors write (the wrapper,
which cannot import it, names its manifest through ``pipeline.core.job.MANIFEST_FILE``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline import config, storage
from pipeline.core.job import MANIFEST_FILE


# -- across run dates ------------------------------------------------------------------
def regress_path(root: str, slug: str, *parts: str) -> str:
    """``pipeline regress`` of one program build (across dates): ``result.json`` and the
    case runs under ``cases/<name>/``."""
    return storage.join(root.rstrip("/"), "regress", slug, *parts)


def regress_result(root: str, slug: str) -> str:
    """The outcome of the last ``pipeline regress`` of one program build."""
    return regress_path(root, slug, "result.json")


def regress_case(root: str, slug: str, case: str) -> str:
    """The storage root of one golden case's run (a ``Layout`` of the case's run date)."""
    return regress_path(root, slug, "cases", case)


# -- on this machine -------------------------------------------------------------------
LEASE_DIR = "_leases"


def lease_uri(root: str, lease_id: str) -> str:
    """A cloud worker's lease (across dates: one per worker process), which the reaper
    reads to tell a live worker's tasks from a dead one's."""
    return storage.join(root.rstrip("/"), LEASE_DIR, f"{lease_id}.json")


def spool_dir() -> Path:
    """Where this machine keeps its local copies of logs that live on S3."""
    return config.local_logs_dir() / "spool"


def spool_path(uri: str) -> Path:
    """The local file a log at ``uri`` is written to: its spool copy when ``uri`` is on
    S3 (uploaded from there), else the file itself."""
    return spool_dir() / uri.removeprefix("s3://") if storage.is_s3(uri) else Path(uri)


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

    def run_lock(self) -> Path:
        """The lock one local ``pipeline run`` of the date holds: next to the date's
        targets on a local root, under ``$PIPELINE_HOME/locks/`` (per root) on S3."""
        if storage.is_s3(self.root):
            digest = hashlib.sha256(self.root.encode()).hexdigest()[:12]
            return config.home() / "locks" / f"run-{digest}-{self.run_date}.lock"
        return Path(self.base) / ".run.lock"

    def written(self) -> list[str]:
        """Every file the date's steps wrote (not its logs, not the programs' attempts,
        which are history), in the order to remove them: the warehouse markers first,
        cleansing last, with its summary (written last) first of its files."""
        files = []
        for folder in ("ingest", "validate", "model", "quality", "cleanse"):
            found = [u for u in storage.listdir(self.path(folder)) if "/attempts/" not in u]
            files += sorted(found, key=lambda uri: (uri != self.cleanse_summary(), uri))
        return files

    # -- cleansing -----------------------------------------------------------------------
    def cleanse(self, *parts: str) -> str:
        """``cleanse/`` (or a path below it): use the named files below."""
        return self.path("cleanse", *parts)

    def pin(self) -> str:
        """The raw files' checksums as cleansed: the run date's pin."""
        return self.cleanse("inputs.json")

    def frame(self) -> str:
        """The physician frame as cleansing read it (the programs' ``{frame}``)."""
        return self.cleanse("frame.csv")

    def rejections(self) -> str:
        return self.cleanse("rejections.parquet")

    def cleanse_summary(self) -> str:
        """What cleansing counted; written last, so it marks a whole cleansing."""
        return self.cleanse("summary.json")

    def cohort_input(self, cohort: str) -> str:
        return self.cleanse("cohorts", f"{cohort}.parquet")

    def cohort_inputs(self) -> str:
        return self.cleanse("cohorts")

    # -- data quality (before any program runs) --------------------------------------------
    def quality(self, cohort: str) -> str:
        return self.path("quality", f"{cohort}.parquet")

    def quality_history(self, cohort: str) -> str:
        """Across run dates: one ``<run_date>.json`` of figures per passed delivery."""
        return storage.join(self.root, "quality-history", cohort)

    def quality_figures(self, cohort: str) -> str:
        return storage.join(self.quality_history(cohort), f"{self.run_date}.json")

    # -- program runs --------------------------------------------------------------------
    def models(self) -> str:
        """Every cohort's program runs (``model/``)."""
        return self.path("model")

    def model(self, cohort: str, slug: str, *parts: str) -> str:
        """A program variant's directory of one cohort: use the named files below."""
        return self.path("model", cohort, slug, *parts)

    def model_results(self, cohort: str, slug: str) -> str:
        """The delivered results (those of the attempt that was collected)."""
        return self.model(cohort, slug, "results.parquet")

    def model_run(self, cohort: str, slug: str) -> str:
        """The collected attempt's ``pipeline_runs`` row."""
        return self.model(cohort, slug, "run.json")

    def attempts(self, cohort: str, slug: str) -> str:
        return self.model(cohort, slug, "attempts")

    def checkpoints(self, cohort: str, slug: str) -> str:
        """The cohort's checkpoint store (a spec with ``checkpoint_dir``): shared by every
        attempt; ``generations/<id>/`` and the pointer ``checkpoint.json`` (the wrapper)."""
        return self.model(cohort, slug, "checkpoint")

    def attempt(self, cohort: str, slug: str, attempt: str, *parts: str) -> str:
        """One attempt's directory: use the named files below."""
        return self.model(cohort, slug, "attempts", attempt, *parts)

    def attempt_job(self, cohort: str, slug: str, attempt: str) -> str:
        """The job document the wrapper reads (``pipeline.core.job``)."""
        return self.attempt(cohort, slug, attempt, "job.json")

    def attempt_csv_input(self, cohort: str, slug: str, attempt: str) -> str:
        """The cohort's rows as CSV, for a spec whose ``input_format`` is csv."""
        return self.attempt(cohort, slug, attempt, "input.csv")

    def attempt_output(self, cohort: str, slug: str, attempt: str) -> str:
        """The program's output directory (``{output}``), as the wrapper uploads it."""
        return self.attempt(cohort, slug, attempt, "out")

    def attempt_results(self, cohort: str, slug: str, attempt: str, results: str) -> str:
        """The program's results file: the spec's ``outputs.results`` (a path relative to
        the output directory, named by the program, not by this layout)."""
        return storage.join(self.attempt_output(cohort, slug, attempt), results)

    def attempt_manifest(self, cohort: str, slug: str, attempt: str) -> str:
        """The wrapper's manifest, written last into the output directory."""
        return storage.join(self.attempt_output(cohort, slug, attempt), MANIFEST_FILE)

    def attempt_run(self, cohort: str, slug: str, attempt: str) -> str:
        """How the attempt ended: its ``pipeline_runs`` row."""
        return self.attempt(cohort, slug, attempt, "run.json")

    def attempt_compute(self, cohort: str, slug: str, attempt: str) -> str:
        """Every submission of the attempt with its capacity and compute (``compute.json``,
        docs/executors.md "Records of every submission")."""
        return self.attempt(cohort, slug, attempt, "compute.json")

    def attempt_interruptions(self, cohort: str, slug: str, attempt: str) -> str:
        """The directory of the cloud tasks the service ended under the attempt."""
        return self.attempt(cohort, slug, attempt, "abandoned")

    def attempt_interrupted(self, cohort: str, slug: str, attempt: str, n: int) -> str:
        """The ``pipeline_runs`` row (abandoned) of the attempt's ``n``-th ended task."""
        return storage.join(self.attempt_interruptions(cohort, slug, attempt), f"{n}.json")

    def checks(self, cohort: str, slug: str) -> str:
        return self.path("validate", cohort, slug, "checks.parquet")

    # -- warehouse markers ---------------------------------------------------------------
    def survey_marker(self, warehouse_id: str) -> str:
        return self.path("ingest", "_survey", f"{warehouse_id}.json")

    def results_markers(self, cohort: str, slug: str) -> str:
        """The directory of a cohort's variant's markers, one per warehouse."""
        return self.path("ingest", cohort, slug)

    def results_marker(self, cohort: str, slug: str, warehouse_id: str) -> str:
        return storage.join(self.results_markers(cohort, slug), f"{warehouse_id}.json")

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
