"""The luigi worker of ``pipeline run``: a task that only waits runs in a thread.

luigi runs every task in a process of its own when ``--workers`` > 1, and never runs more
tasks at once than ``--workers``. A cloud program run (RunModel on ECS or Batch) spends
hours waiting for its container, so with luigi's worker a delivery of N cohorts either
runs in waves of ``--workers`` or holds N processes on the orchestrator. This worker
runs tasks that say ``waits_in_thread`` in a thread of the worker's own process instead:
they take no process slot, share one AWS client, one batched poller and one lease, and
still are ordinary luigi tasks with their own status, progress and tracking URL in
luigid. Everything else (cleansing, validation, ingest, local programs) runs in
processes as before, at most ``--workers`` at a time.

On interrupt (SIGTERM/SIGINT turned into KeyboardInterrupt by the CLI) luigi's worker
calls ``terminate()`` on every running task: a thread task then stops its cloud task
(``executors.cloud.request_shutdown``) and is joined before the process exits.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Protocol

import luigi.interface
import luigi.worker

JOIN_SECONDS = 120.0  # how long an interrupted worker waits for its threads to stop tasks


class TaskThread:
    """A luigi ``TaskProcess`` run in a thread, with the process interface the worker uses."""

    def __init__(self, process: luigi.worker.TaskProcess) -> None:
        self.process = process
        self.task = process.task
        self.status_reporter = process.status_reporter
        self.timeout_time = None
        self.worker_timeout = process.worker_timeout
        self.use_multiprocessing = False
        self._thread = threading.Thread(
            target=process.run, name=f"task-{process.task.task_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self._thread.is_alive() else 0

    def terminate(self) -> None:
        # Only a process that ran a cloud task has imported the cloud executors (and
        # boto3); DuckDB loads, the other thread tasks, finish their transaction.
        cloud = sys.modules.get("pipeline.executors.cloud")
        if cloud is not None:
            cloud.request_shutdown("the worker was interrupted")
        self._thread.join(timeout=JOIN_SECONDS)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class _Serialized:
    """Calls to an in-process (local) scheduler, one at a time: task threads report
    status while the worker's main thread schedules. The lock is made anew in a forked
    child, which could otherwise inherit it held by another thread."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self._lock = threading.RLock()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._scheduler, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def _import_lazy_modules() -> None:
    """Import now what tasks would import lazily on their first parquet read or CSV
    write. Each forked task process would import them again (a RunModel between two
    programs on one slot), and a module a thread is importing while the worker forks
    stays locked in the child for ever: the first import of it there deadlocks (seen: a
    ValidateResults process stuck importing pyarrow.dataset, which pyarrow.parquet
    imports on its first read, while a thread of the worker read a parquet file)."""
    import pyarrow.dataset
    import pyarrow.pandas_compat  # noqa: F401


class Observer(Protocol):
    """Who is told what the worker does (``pipeline.console.RunConsole``)."""

    def scheduled(self, task: luigi.Task, status: str) -> None: ...
    def started(self, task: luigi.Task) -> None: ...
    def finished(self, task: luigi.Task, status: str, explanation: Any) -> None: ...


class PipelineWorker(luigi.worker.Worker):
    """luigi's worker, with thread tasks not counted against ``worker_processes``, telling
    an optional observer when tasks are scheduled, start and end."""

    def __init__(
        self,
        scheduler: Any = None,
        worker_processes: int = 1,
        observer: Observer | None = None,
        **kwargs: Any,
    ) -> None:
        _import_lazy_modules()
        if isinstance(scheduler, luigi.scheduler.Scheduler):
            scheduler = _Serialized(scheduler)
        self.observer = observer
        self._finishing = False
        super().__init__(scheduler=scheduler, worker_processes=worker_processes, **kwargs)

    def _add_task(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._add_task(*args, **kwargs)
        task = self._scheduled_tasks.get(kwargs.get("task_id", ""))
        if self.observer is not None and task is not None:
            status = kwargs.get("status")
            if self._finishing:
                self.observer.finished(task, status, kwargs.get("expl"))
            else:
                self.observer.scheduled(task, status)
        return result

    def _handle_next_task(self) -> None:
        # Every _add_task made from here reports a task that ended.
        self._finishing = True
        try:
            super()._handle_next_task()
        finally:
            self._finishing = False

    @property  # type: ignore[override]
    def worker_processes(self) -> int:
        running = getattr(self, "_running_tasks", {})
        return self._process_slots + sum(isinstance(p, TaskThread) for p in running.values())

    @worker_processes.setter
    def worker_processes(self, value: int) -> None:
        self._process_slots = int(value)

    def __exit__(self, *exc: Any) -> bool:
        try:
            return super().__exit__(*exc)
        finally:
            # Thread tasks stopped by an interrupt put their results after the worker has
            # stopped reading them: with a few dozen of them the queue's pipe is full and
            # its feeder thread would block the process's exit for ever. Nobody reads
            # them any more, so do not wait to flush them. (Only here, in the worker's
            # own process: task processes must still flush their result.)
            self._task_result_queue.cancel_join_thread()

    def _create_task_process(self, task: luigi.Task) -> Any:
        process = super()._create_task_process(task)
        if getattr(task, "waits_in_thread", False):
            process.use_multiprocessing = False
            return TaskThread(process)
        return process

    def _run_task(self, task_id: str) -> None:
        task = self._scheduled_tasks.get(task_id)
        if self.observer is not None and task is not None and task_id not in self._running_tasks:
            self.observer.started(task)
        if (
            task is None
            or task_id in self._running_tasks
            or not getattr(task, "waits_in_thread", False)
        ):
            super()._run_task(task_id)
            return
        thread = self._create_task_process(task)
        self._running_tasks[task_id] = thread
        thread.start()


class WorkerSchedulerFactory(luigi.interface._WorkerSchedulerFactory):
    """luigi's factory, making ``PipelineWorker``s (telling ``observer``, if any)."""

    def __init__(self, observer: Observer | None = None) -> None:
        self.observer = observer

    def create_worker(self, scheduler: Any, worker_processes: int, assistant: bool = False) -> Any:
        return PipelineWorker(
            scheduler=scheduler,
            worker_processes=worker_processes,
            assistant=assistant,
            observer=self.observer,
        )
