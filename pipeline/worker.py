"""The luigi worker of ``pipeline run``: every task runs in a thread of one process.

luigi's own worker forks a process per task when ``--workers`` > 1 and never runs more
tasks at once than ``--workers``. Neither fits this pipeline: a cloud program run
(RunModel on ECS or Batch) spends hours waiting for its container, so a delivery of N
cohorts would run in waves of ``--workers`` or hold N processes on the orchestrator; and
the short per-cohort tasks (CheckData, ValidateResults, IngestResults) cost less than
forking the worker (tens of ms for a process holding pandas, pyarrow and DuckDB) and
starting its result pipe. The heavy work never runs in the worker's Python anyway:
programs run in their own processes (the wrapper, or an ECS task / Batch job), cleansing
in pyarrow kernels, loads in DuckDB, all of which release the GIL.

So this worker runs each task in a thread of its own process. ``--workers`` bounds the
tasks that work (cleansing, data checks, validation, ingest); tasks that say
``waits_in_thread`` (RunModel, on every executor) take no slot: they wait for a program
and hold their executor's slots instead (``[resources] model_slots`` locally,
``[ecs]/[batch] max_running`` in the cloud, where they share one AWS client, one batched
poller and one lease). Every task stays an ordinary luigi task with its own status,
progress and tracking URL in luigid, and luigi's scheduler still decides what runs next
(priorities, the ``duckdb_writer`` resource).
No process is forked, so nothing a thread holds (an import lock, a log stream's lock, a
DuckDB connection) can be inherited half-taken by a child.

On interrupt (SIGTERM/SIGINT turned into KeyboardInterrupt by the CLI) luigi's worker
calls ``terminate()`` on every running task: that asks every executor run of this
process to stop its program or cloud task (``executors.base.request_shutdown``), and the
thread is joined before the process exits. A thread in Python code (a load, a check)
finishes what it does; its targets are written atomically either way.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import luigi.interface
import luigi.worker

from pipeline.executors.base import request_shutdown

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
        request_shutdown("the worker was interrupted")
        self._thread.join(timeout=JOIN_SECONDS)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class _Serialized:
    """Calls to an in-process (local) scheduler, one at a time: task threads report
    status while the worker's main thread schedules."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._scheduler, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


class Observer(Protocol):
    """Who is told what the worker does (``pipeline.console.RunConsole``)."""

    def scheduled(self, task: luigi.Task, status: str) -> None: ...
    def started(self, task: luigi.Task) -> None: ...
    def finished(self, task: luigi.Task, status: str, explanation: Any) -> None: ...


class PipelineWorker(luigi.worker.Worker):
    """luigi's worker, running every task in a thread (``--workers`` of them at once, plus
    any number that only wait), telling an optional observer when tasks are scheduled,
    start and end."""

    def __init__(
        self,
        scheduler: Any = None,
        worker_processes: int = 1,
        observer: Observer | None = None,
        **kwargs: Any,
    ) -> None:
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
        # luigi's loop asks for work while len(running) < worker_processes: tasks that
        # only wait add a slot each, so they never hold up the ones that work.
        running = getattr(self, "_running_tasks", {})
        waiting = sum(getattr(p.task, "waits_in_thread", False) for p in running.values())
        return self._slots + waiting

    @worker_processes.setter
    def worker_processes(self, value: int) -> None:
        self._slots = int(value)

    def __exit__(self, *exc: Any) -> bool:
        try:
            return super().__exit__(*exc)
        finally:
            # Threads stopped by an interrupt put their results after the worker has
            # stopped reading them: with a few dozen of them the queue's pipe is full and
            # its feeder thread would block the process's exit for ever. Nobody reads
            # them any more, so do not wait to flush them.
            self._task_result_queue.cancel_join_thread()

    def _create_task_process(self, task: luigi.Task) -> TaskThread:
        process = super()._create_task_process(task)
        process.use_multiprocessing = False
        return TaskThread(process)

    def _run_task(self, task_id: str) -> None:
        task = self._scheduled_tasks.get(task_id)
        if task is None or task_id in self._running_tasks:
            super()._run_task(task_id)  # luigi's "already running: take a break"
            return
        if self.observer is not None:
            self.observer.started(task)
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
