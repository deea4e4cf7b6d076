"""What every pipeline task shares: the run date, its layout, logs, failure and timing
records — all under the storage root, so they outlive the worker that wrote them."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import luigi

from pipeline import config, metrics, storage
from pipeline.core.spec import ProgramSpec
from pipeline.errors import PipelineError
from pipeline.executors.attempts import run_records
from pipeline.layout import Layout, spool_dir
from pipeline.tasks.params import ExecutorParameter, ProgramParameter, RawParameter, load_program

# A task's log on an S3 root goes up at most this long after a line is added (the lines
# of that time in one upload), and whole when the task ends: one PUT per task for most.
LOG_UPLOAD_SECONDS = 2.0


class RunDateTask(luigi.Task):
    """A task of one delivery; every output lives under ``<storage root>/<run_date>/``."""

    run_date = luigi.DateParameter(description="Delivery date (YYYY-MM-DD): names every output.")

    @property
    def layout(self) -> Layout:
        return Layout.of(self.run_date)

    def target(self, uri: str) -> luigi.target.FileSystemTarget:
        return storage.target(uri)

    def report(self, message: str, progress: float | None = None) -> None:
        """Show ``message`` (and ``progress`` in %) in luigid and append it to the task log
        under the storage root, whose link becomes the task's tracking URL."""
        line = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}\n"
        log = self.layout.task_log(self.task_id)
        with contextlib.suppress(OSError, PipelineError):
            storage.append_text(log, line, spool_dir(), upload_within=LOG_UPLOAD_SECONDS)
        # The worker installs these callbacks only while the task runs in it.
        if self.set_tracking_url and not getattr(self, "_log_linked", False):
            self._log_linked = True
            self.set_tracking_url(log_url(log))
        self.show(message)
        if progress is not None:
            self.show_progress(progress)

    def show(self, message: str) -> None:
        """Show ``message`` in luigid only (not logged: e.g. a running program's clock)."""
        tell = self.set_status_message or getattr(
            getattr(self, "reporter", None), "update_status_message", None
        )  # the worker's reporter outlives run(): a failure's line still reaches luigid
        if tell:
            tell(message)

    def link(self, url: str) -> None:
        """Make ``url`` (e.g. a program run's console) the tracking URL instead of the log."""
        self._log_linked = True
        if self.set_tracking_url:
            self.set_tracking_url(url)

    def show_progress(self, percent: float) -> None:
        if self.set_progress_percentage:
            self.set_progress_percentage(round(percent))

    def on_failure(self, exception: BaseException) -> str:
        # Our own errors already say what is wrong and where: show that line in luigid
        # and the summary, not a traceback.
        if isinstance(exception, PipelineError):
            message = f"{type(exception).__name__}: {exception}"
        else:
            message = super().on_failure(exception)
        with contextlib.suppress(OSError, PipelineError):
            storage.write_bytes(self.layout.failure(self.task_id), message.encode())
        with contextlib.suppress(OSError, PipelineError):
            self.report(f"FAILED {message.splitlines()[0] if message else ''}")
            storage.flush_appended(self.layout.task_log(self.task_id))
        metrics.record_task(self.task_family, getattr(self, "cohort", None), failed=True)
        return message

    def on_success(self) -> None:
        log = self.layout.task_log(self.task_id)
        with contextlib.suppress(OSError, PipelineError):
            storage.flush_appended(log)
            # A failure is written with a line in the task's log: a log this run started
            # has none before it (on S3, one DELETE request a task fewer).
            if not storage.started_here(log):
                storage.remove_file(self.layout.failure(self.task_id))


# Each task's last execution (host, pid, start, end, outcome, parameters) next to its
# log, for `pipeline status` and `pipeline report`: targets say what is done, these say
# when, where and with which program.
@RunDateTask.event_handler(luigi.Event.START)
def _record_start(task: RunDateTask) -> None:
    _write_timing(
        task, status="running", started_at=_now(), host=socket.gethostname(), pid=os.getpid()
    )


@RunDateTask.event_handler(luigi.Event.PROCESSING_TIME)
def _record_processing_time(task: RunDateTask, seconds: float) -> None:
    _write_timing(task, status="succeeded", finished_at=_now(), seconds=round(seconds, 3))
    metrics.record_task(task.task_family, getattr(task, "cohort", None), seconds=seconds)
    if task.task_family == "IngestResults" and isinstance(task, CohortTask):
        # The cohort's results are in: what its delivery cost, every attempt counted.
        with contextlib.suppress(OSError, ValueError, PipelineError):
            compute = compute_of(task.layout, task.cohort, task.spec)
            metrics.record_delivery_cost(task.cohort, task.executor, compute)


@RunDateTask.event_handler(luigi.Event.FAILURE)
def _record_failure(task: RunDateTask, _exception: BaseException) -> None:
    _write_timing(task, status="failed", finished_at=_now())


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write_timing(task: RunDateTask, **fields: Any) -> None:
    uri = task.layout.timing(task.task_id)
    previous: dict[str, Any] = {}
    if fields.get("status") != "running":
        previous = getattr(task, "_timing", {})
    record = {
        **previous,
        "task_id": task.task_id,
        "task_family": task.task_family,
        "params": task.to_str_params(only_significant=True),
        "cohort": getattr(task, "cohort", None),
        **fields,
    }
    task._timing = record  # type: ignore[attr-defined]
    # "running" goes up within LOG_UPLOAD_SECONDS, as the task's log lines do: a task that
    # ends sooner writes its record once, with its outcome.
    within = LOG_UPLOAD_SECONDS if fields.get("status") == "running" else 0.0
    with contextlib.suppress(OSError, PipelineError):
        storage.write_within(uri, storage.json_bytes(record), within)


def log_url(uri: str) -> str:
    """A link to a log under the storage root: ``[pipeline] logs_url`` + its path when a
    web front of the storage is configured, the S3 console, or a ``file://`` URI."""
    return storage.web_url(
        uri, root=config.storage_root(), base_url=config.get("pipeline", "logs_url")
    )


class CohortTask(RunDateTask):
    """A task of one cohort's program run: the cohort, the program spec (its identity) and
    where it runs (not part of its identity)."""

    cohort = luigi.Parameter(description="Cohort code (one disease).")
    program = ProgramParameter(
        default="",
        description="Program spec TOML, optionally with param overrides (SPEC?bootstrap=30); "
        "default: [pipeline] program.",
    )
    executor = ExecutorParameter(
        default="", description="Where the program runs: local, ecs or batch ([pipeline] executor)."
    )
    raw = RawParameter(default="", description="Raw export directory (for cleansing).")

    @functools.cached_property
    def spec(self) -> ProgramSpec:
        return load_program(self.program)

    def cohort_params(self) -> dict[str, Any]:
        """The parameters that name this cohort's program run (for upstream tasks)."""
        return {
            "run_date": self.run_date,
            "cohort": self.cohort,
            "program": self.program,
            "executor": self.executor,
            "raw": self.raw,
        }


@dataclass
class Compute:
    """What program runs used: vCPU-seconds, GiB-seconds and USD, every submission counted
    (the ``pipeline_runs`` rows of every attempt: the one that produced the results, and
    the failed, abandoned and interrupted ones, whose compute was paid for too)."""

    vcpu_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    cost_usd: float = 0.0
    submissions: int = 0
    abandoned: int = 0  # submissions that did not produce the delivery's results
    abandoned_cost_usd: float = 0.0
    # USD by capacity (spot / on_demand), for rows that record it (docs/executors.md)
    by_capacity: dict[str, float] = field(default_factory=dict)

    def add_row(self, row: dict[str, Any]) -> None:
        cost = float(row.get("cost_usd") or 0.0)
        self.vcpu_seconds += float(row.get("vcpu_seconds") or 0.0)
        self.memory_gib_seconds += float(row.get("memory_gib_seconds") or 0.0)
        self.cost_usd += cost
        self.submissions += 1
        if row.get("status") != "succeeded":
            self.abandoned += 1
            self.abandoned_cost_usd += cost
        if row.get("capacity"):
            key = str(row["capacity"])
            self.by_capacity[key] = self.by_capacity.get(key, 0.0) + cost

    def __add__(self, other: Compute) -> Compute:
        total = Compute(**asdict(self))
        for name in ("vcpu_seconds", "memory_gib_seconds", "cost_usd", "abandoned_cost_usd"):
            setattr(total, name, getattr(total, name) + getattr(other, name))
        total.submissions += other.submissions
        total.abandoned += other.abandoned
        for key, usd in other.by_capacity.items():
            total.by_capacity[key] = total.by_capacity.get(key, 0.0) + usd
        return total

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("vcpu_seconds", "memory_gib_seconds"):
            data[name] = round(data[name], 1)
        for name in ("cost_usd", "abandoned_cost_usd"):
            data[name] = round(data[name], 6)
        data["by_capacity"] = {k: round(v, 6) for k, v in self.by_capacity.items()}
        return data

    def text(self) -> str:
        """One line: ``$1.23 (4,000 vCPU·s, 8,000 GiB·s; 2 abandoned: $0.40)``."""
        line = (
            f"${self.cost_usd:,.2f} ({self.vcpu_seconds:,.0f} vCPU·s, "
            f"{self.memory_gib_seconds:,.0f} GiB·s"
        )
        if self.abandoned:
            line += f"; {self.abandoned} abandoned: ${self.abandoned_cost_usd:,.2f}"
        return line + ")"


def compute_of(layout: Layout, cohort: str, spec: ProgramSpec) -> Compute:
    """The compute of every program run of ``cohort`` × ``spec`` for ``layout``'s date."""
    compute = Compute()
    for uri in run_records(layout, cohort, spec):
        with contextlib.suppress(OSError, ValueError, PipelineError):
            compute.add_row(storage.read_json(uri))
    return compute
