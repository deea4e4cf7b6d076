"""Where programs run: ``local`` (subprocess), ``ecs`` (RunTask), ``batch`` (SubmitJob)."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.executors.base import Events, Executor, Job, RunRecord

EXECUTORS = ("local", "ecs", "batch")

__all__ = ["EXECUTORS", "Events", "Executor", "Job", "RunRecord", "get_executor"]


def get_executor(name: str) -> Executor:
    """The executor called ``name``, configured from luigi.cfg (clients made here, not at
    import time)."""
    if name == "local":
        from pipeline.executors.local import LocalExecutor

        return LocalExecutor()
    raise ConfigError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")
