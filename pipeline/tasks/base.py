"""What every pipeline task shares: the run date, target paths, failure reporting."""

from __future__ import annotations

from pathlib import Path

import luigi

from pipeline import config, storage
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
        return message

    def on_success(self) -> None:
        self.failure_file().unlink(missing_ok=True)


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
