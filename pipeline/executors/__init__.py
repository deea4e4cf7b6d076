"""Where programs run: ``local`` (subprocess), ``ecs`` (RunTask), ``batch`` (SubmitJob)."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable

from pipeline.errors import ConfigError
from pipeline.executors.base import Events, Executor, Job, RunRecord

EXECUTORS = ("local", "ecs", "batch")

__all__ = ["EXECUTORS", "Events", "Executor", "Job", "RunRecord", "get_executor", "preload"]

_MODULES = {
    "local": "pipeline.executors.local",
    "ecs": "pipeline.executors.ecs",
    "batch": "pipeline.executors.batch",
}


def preload(name: str) -> None:
    """Import executor ``name``'s module (no client is made). ``pipeline run`` does it
    before its worker starts task threads, so that the first program runs do not import
    it (psutil, the wrapper; boto3) while they start."""
    importlib.import_module(_MODULES[name])


_cloud: dict[tuple[int, str, object], Executor] = {}
_cloud_lock = threading.Lock()


def _shared(name: str, settings: object, make: Callable[[], Executor]) -> Executor:
    key = (os.getpid(), name, settings)
    with _cloud_lock:
        if key not in _cloud:
            _cloud[key] = make()
        return _cloud[key]


def get_executor(name: str) -> Executor:
    """The executor called ``name``, configured from luigi.cfg (clients made here, not at
    import time).

    A cloud executor is shared by every task of a process with the same settings, so
    that cohorts running side by side in one process share one client and one poller
    (batched describe calls)."""
    if name == "local":
        from pipeline.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ecs":
        from pipeline.executors.ecs import EcsExecutor, EcsSettings

        ecs = EcsSettings.from_config()
        return _shared(name, ecs, lambda: EcsExecutor(ecs))
    if name == "batch":
        from pipeline.executors.batch import BatchExecutor, BatchSettings

        batch = BatchSettings.from_config()
        return _shared(name, batch, lambda: BatchExecutor(batch))
    raise ConfigError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")
