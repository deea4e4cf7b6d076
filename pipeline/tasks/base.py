"""What every pipeline task shares: the run date, target paths, failure reporting."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import luigi

from pipeline import config, metrics, storage
from pipeline.errors import ConfigError, PipelineError
from pipeline.executors import EXECUTORS


class RunDateTask(luigi.Task):
    """A task of one delivery; every output lives under ``<storage root>/<run_date>/``."""

    run_date = luigi.DateParameter(description="Delivery date (YYYY-MM-DD): names every output.")

    def path(self, *parts: str) -> str:
        return storage.join(config.storage_root(), self.run_date.isoformat(), *parts)

    def target(self, *parts: str) -> luigi.target.FileSystemTarget:
        return storage.target(self.path(*parts))

    def failure_file(self) -> Path:
        """Where the last failure of this task is recorded (read by run summaries)."""
        return config.logs_dir() / self.run_date.isoformat() / "failures" / f"{self.task_id}.txt"

    def task_log(self) -> Path:
        """This task's own log: its status messages and failure, timestamped (a program
        run's output has its own log, linked by RunModel's tracking URL)."""
        return config.logs_dir() / self.run_date.isoformat() / "tasks" / f"{self.task_id}.log"

    def timing_file(self) -> Path:
        """When this task last ran and how it ended (written by the worker's events)."""
        return self.task_log().with_suffix(".json")

    def report(self, message: str, progress: float | None = None) -> None:
        """Show ``message`` (and ``progress`` in %) in luigid and append it to the task log,
        whose URL becomes the task's tracking URL on the first report."""
        log = self.task_log()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}\n")
        # The worker installs these callbacks only while the task runs in it.
        if self.set_tracking_url and not getattr(self, "_log_linked", False):
            self._log_linked = True
            self.set_tracking_url(log_url(log))
        if self.set_status_message:
            self.set_status_message(message)
        if progress is not None:
            self.show_progress(progress)

    def link(self, url: str) -> None:
        """Make ``url`` (e.g. a program run's log) the tracking URL instead of the task log."""
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
        path = self.failure_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message)
        with contextlib.suppress(OSError):
            self.report(f"FAILED {message.splitlines()[0] if message else ''}")
        metrics.record_task(self.task_family, getattr(self, "cohort", None), failed=True)
        return message

    def on_success(self) -> None:
        self.failure_file().unlink(missing_ok=True)


# Each task's last execution (host, pid, start, end, outcome) next to its log, for
# `pipeline status` and `pipeline report`: targets say what is done, these say when.
@RunDateTask.event_handler(luigi.Event.START)
def _record_start(task: RunDateTask) -> None:
    _write_timing(
        task, status="running", started_at=_now(), host=socket.gethostname(), pid=os.getpid()
    )


@RunDateTask.event_handler(luigi.Event.PROCESSING_TIME)
def _record_processing_time(task: RunDateTask, seconds: float) -> None:
    _write_timing(task, status="succeeded", finished_at=_now(), seconds=round(seconds, 3))
    metrics.record_task(task.task_family, getattr(task, "cohort", None), seconds=seconds)


@RunDateTask.event_handler(luigi.Event.FAILURE)
def _record_failure(task: RunDateTask, _exception: BaseException) -> None:
    _write_timing(task, status="failed", finished_at=_now())


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write_timing(task: RunDateTask, **fields: object) -> None:
    path = task.timing_file()
    try:
        previous = json.loads(path.read_text()) if fields.get("status") != "running" else {}
    except (OSError, ValueError):
        previous = {}
    record = {
        **previous,
        "task_id": task.task_id,
        "task_family": task.task_family,
        "cohort": getattr(task, "cohort", None),
        **fields,
    }
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(path)


def log_url(path: Path) -> str:
    """A link to a log file: under ``[pipeline] logs_url`` when set (a web server or
    console showing $PIPELINE_HOME/logs), else a ``file://`` URI."""
    base = config.get("pipeline", "logs_url")
    if base:
        try:
            return f"{base.rstrip('/')}/{path.relative_to(config.logs_dir()).as_posix()}"
        except ValueError:
            pass
    return path.as_uri()


class CohortTask(RunDateTask):
    """A task of one cohort's program run; ``program`` and ``executor`` fall back to the
    ``[pipeline]`` settings when empty."""

    cohort = luigi.Parameter(description="Cohort code (one disease).")
    program = luigi.Parameter(default="", description="Program spec TOML ([pipeline] program).")
    executor = luigi.Parameter(
        default="",
        significant=False,
        description="Where the program runs: local, ecs or batch ([pipeline] executor).",
    )


def program_path(program: str) -> str:
    """The program spec to use: the parameter, else ``[pipeline] program``."""
    return program or config.program_spec_path()


def warehouse_uri(warehouse: str) -> str:
    return warehouse or config.warehouse_uri()


def executor_name(executor: str) -> str:
    """The executor to use: the parameter, else ``[pipeline] executor``."""
    name = executor or config.executor_name()
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")
    return name
