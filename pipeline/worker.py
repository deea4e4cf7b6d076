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
(priorities, resources).
No process is forked, so nothing a thread holds (an import lock, a log stream's lock, a
DuckDB connection) can be inherited half-taken by a child.

On interrupt (SIGTERM/SIGINT turned into KeyboardInterrupt by the CLI) luigi's worker
calls ``terminate()`` on every running task: that asks every executor run of this
process to stop its program or cloud task (``executors.base.request_shutdown``), and the
thread is joined before the process exits. A thread in Python code (a load, a check)
finishes what it does; its targets are written atomically either way.

luigid may go away mid-run (a SIGKILL, a lost host, an ECS restart) and come back without
the run's tasks: it keeps its graph in memory and saves it only on a clean shutdown. Each
call to it is retried for ``[core] rpc_retry_attempts`` × ``rpc_retry_wait``; beyond that,
while tasks run here, the worker logs the error and asks again later instead of dying,
and a task's status message luigid does not take is dropped, not turned into a failure.
Running programs and cloud tasks go on meanwhile. When luigid answers again but counts no
pending task of this worker while the run's root task, not yet done, is unknown to it or
not this worker's in its graph (a state file older than the run), or when a report of a
finished task did not reach it, the worker registers the run again through luigi's normal
``add`` path: done tasks as DONE (their targets), tasks running in its threads as RUNNING
(so nothing is started twice; their last status message is sent again), tasks that failed
in this run as FAILED (a run never retries them), the rest as PENDING; and the run goes
on. It does so once per loss: it waits for luigid to count its tasks again before it would
register them another time. All of this sits behind ``SchedulerLink``, which relies on
luigid's RPC interface only (``get_work``, ``task_search``, ``add_worker``).

The same worker is the assistant (``pipeline assist``, ``assistant=True``): luigi's
always-on worker that asks luigid for any runnable task, e.g. one a person forgave with
luigid's "Forgive failures" button after the run that scheduled it ended, and then for the
tasks downstream of it as they become runnable. luigid names such a task by module, family
and parameters; the assistant runs only tasks of ``pipeline.tasks`` (``runs_here``) and
fails any other one luigid hands it, with the reason, before importing anything of it. It
holds the run lock of a task's date while the task runs (``RunLocks``: a local
``pipeline run --local-scheduler`` of that date refuses meanwhile, and the assistant
refuses a date such a run holds), outlives luigid's absences, and keeps its bookkeeping
bounded however long it runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

import luigi.interface
import luigi.rpc
import luigi.scheduler
import luigi.worker
from luigi.task_status import DISABLED, DONE, FAILED, PENDING, RUNNING

from pipeline import storage
from pipeline.errors import PipelineError
from pipeline.executors.base import request_shutdown
from pipeline.steps import STEPS

JOIN_SECONDS = 120.0  # how long an interrupted worker waits for its threads to stop tasks
MAX_REGISTRATIONS = 20  # times one run registers its tasks again with a luigid that lost them
KEPT_REPLIES = 100  # get_work replies an assistant keeps (luigi keeps every one)
# A run started moments after another was killed finds luigid listing the dead run's
# tasks RUNNING until it prunes that worker ([scheduler] worker_disconnect_delay, 60 s,
# then its prune timer): a worker whose last contact has not moved for this long has
# stopped, and the run waits (at most ORPHAN_WAIT) for luigid to release its tasks.
GONE_AFTER = 5.0
ORPHAN_WAIT = 600.0
# The local scheduler prunes its graph at most this often (luigi's prunes on every
# get_work: a walk over every task, and the run asks for work after each task it ends).
LOCAL_PRUNE_SECONDS = 1.0
REPORT_SECONDS = 1.0  # a task's status message and progress reach the scheduler this often

# What the assistant runs: the task classes of pipeline.tasks (the delivery's steps and
# the raw export), named by luigid as module and family.
TASK_PACKAGE = "pipeline.tasks"
FAMILIES = frozenset({*(step.family for step in STEPS), "RawExport"})


def runs_here(module: str | None, family: str | None) -> bool:
    """True when luigid's ``module``/``family`` is a task of this pipeline (decided on the
    names alone: nothing is imported)."""
    module = module or ""
    return (module == TASK_PACKAGE or module.startswith(TASK_PACKAGE + ".")) and (
        family in FAMILIES
    )


@contextlib.contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM (ECS stopping the container) interrupts the worker as Ctrl-C does: a
    ``KeyboardInterrupt`` in the main thread, which stops the running tasks' programs and
    cloud tasks (``TaskThread.terminate``)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _in_logging(frame):
        # Raised here, the interrupt could land between a log handler's acquire() and its
        # try: the lock would stay taken, and every later log line and the run's exit
        # would wait for it for ever. Deliver the signal again in a moment.
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _in_logging(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename == logging.__file__:
            return True
        frame = frame.f_back
    return False


class AlreadyRunning(PipelineError):
    """Another local run of the same run date holds its lock."""


def take_run_lock(path: Path, holder: str, date: str, root: str) -> IO[str]:
    """Lock ``path`` (a date's run lock, ``Layout.run_lock()``) for this process and write
    ``holder`` into it; raises ``AlreadyRunning`` naming who holds it. Closing the returned
    file releases it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        held_by = fh.read().strip() or "another process"
        fh.close()
        raise AlreadyRunning(
            f"run date {date} is already running against {root} ({held_by}): wait for it "
            f"to end, or watch it with `pipeline status --run-date {date}`"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(
        f"{holder} pid {os.getpid()} on {socket.gethostname()}, since {dt.datetime.now():%H:%M:%S}"
    )
    fh.flush()
    return fh


class RunLocks:
    """The run locks an assistant holds: a date's while any of its tasks runs here (one
    lock per date however many of its tasks run at once)."""

    def __init__(self, holder: str = "pipeline assist") -> None:
        self.holder = holder
        self._lock = threading.Lock()
        self._held: dict[Path, tuple[IO[str], int]] = {}

    @contextlib.contextmanager
    def holding(self, layout: Any) -> Iterator[None]:
        path = layout.run_lock()
        with self._lock:
            fh, users = self._held.get(path, (None, 0))
            if fh is None:
                fh = take_run_lock(path, self.holder, layout.run_date, layout.root)
            self._held[path] = (fh, users + 1)
        try:
            yield
        finally:
            with self._lock:
                fh, users = self._held[path]
                if users == 1:
                    del self._held[path]
                    fh.close()
                else:
                    self._held[path] = (fh, users - 1)


# Its warnings are shown on the run's console too (pipeline.console: every "pipeline" logger).
logger = logging.getLogger("pipeline.worker")


class Reporter:
    """A task's status reporter (luigi's ``TaskStatusReporter``) that outlives luigid: a
    report luigid does not take after luigi's own retries is logged and dropped (a status
    message is not worth failing a program run for), and the last tracking URL, status
    message and progress are kept, to be sent again to a luigid that lost the task.

    Status messages and progress are coalesced: each goes to the scheduler at most every
    REPORT_SECONDS (the latest value, when the interval ends) and when the task's thread
    ends (``flush``). A short step reports a handful of lines in well under a second;
    through luigid every one was an HTTP request (5.3 per task at 20 cohorts: more than
    luigi's own add_task and get_work calls together), now about two."""

    KEPT = ("update_tracking_url", "update_status_message", "update_progress_percentage")
    COALESCED = ("update_status_message", "update_progress_percentage")

    def __init__(self, reporter: Any, interval: float | None = None) -> None:
        self._reporter = reporter
        self._task_id = getattr(reporter, "_task_id", "")
        self.scheduler_messages = getattr(reporter, "scheduler_messages", None)
        self.last: dict[str, Any] = {}
        self.interval = REPORT_SECONDS if interval is None else interval
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()  # _pending
        self._sending = threading.Lock()  # values leave in the order they were taken

    def _call(self, name: str, value: Any) -> None:
        if name in self.KEPT:
            self.last[name] = value
        if name not in self.COALESCED:
            self._send(name, value)
            return
        with self._lock:
            self._pending[name] = value
        _FLUSHES.add(self, time.monotonic() + self.interval)

    def _send(self, name: str, value: Any) -> None:
        try:
            getattr(self._reporter, name)(value)
        except luigi.rpc.RPCError as exc:
            logger.warning("luigid did not take %s of %s: %s", name, self._task_id, exc)

    def flush(self) -> None:
        """Send the status message and progress not sent yet."""
        with self._sending:
            _FLUSHES.discard(self)
            with self._lock:
                pending, self._pending = self._pending, {}
            for name, value in pending.items():
                self._send(name, value)

    def update_tracking_url(self, tracking_url: str) -> None:
        self._call("update_tracking_url", tracking_url)

    def update_status_message(self, message: str) -> None:
        self._call("update_status_message", message)

    def update_progress_percentage(self, percentage: float) -> None:
        self._call("update_progress_percentage", percentage)

    def decrease_running_resources(self, decrease_resources: dict[str, int]) -> None:
        self._call("decrease_running_resources", decrease_resources)

    def report_task_statistics(self, statistics: dict[str, Any]) -> None:
        self._call("report_task_statistics", statistics)

    def replay(self) -> None:
        """Send the last tracking URL, status message and progress again."""
        for name in self.KEPT:
            if name in self.last:
                self._send(name, self.last[name])


class _DueFlushes:
    """Reporters with a status message or progress waiting for their interval to end,
    flushed by one daemon thread of the process (a timer thread per task costs a thread
    start each, slow while the GIL is busy)."""

    def __init__(self) -> None:
        self._due: dict[Reporter, float] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._until = math.inf  # when the thread wakes by itself next

    def add(self, reporter: Reporter, at: float) -> None:
        with self._wake:
            if reporter in self._due:
                return  # already due earlier
            self._due[reporter] = at
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reports", daemon=True)
                self._thread.start()
            if at < self._until:  # else it is seen when the thread wakes (one a task end)
                self._wake.notify()

    def discard(self, reporter: Reporter) -> None:
        with self._wake:
            self._due.pop(reporter, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                ready = [r for r, at in self._due.items() if at <= now]
                if not ready:
                    self._until = min(self._due.values(), default=math.inf)
                    self._wake.wait(self._until - now if self._due else None)
                    self._until = -math.inf  # awake: it sees every add before it waits again
                    continue
            for reporter in ready:
                try:
                    reporter.flush()
                except Exception:  # a status line is never worth this thread
                    logger.warning("could not send a status report", exc_info=True)


_FLUSHES = _DueFlushes()


class TaskThread:
    """A luigi ``TaskProcess`` run in a thread, with the process interface the worker uses."""

    def __init__(self, process: luigi.worker.TaskProcess) -> None:
        self.process = process
        self.task = process.task
        process.status_reporter = Reporter(process.status_reporter)
        self.status_reporter = process.status_reporter
        # luigi hands a task its status callbacks only while run() runs; a failure's line
        # (on_failure, after run) goes through this (pipeline.tasks.base).
        process.task.reporter = self.status_reporter
        self.timeout_time = None
        self.worker_timeout = process.worker_timeout
        self.use_multiprocessing = False
        self._thread = threading.Thread(
            target=self._run, name=f"task-{process.task.task_id}", daemon=True
        )

    def _run(self) -> None:
        try:
            self.process.run()
        finally:
            self.status_reporter.flush()  # the task's last message, e.g. why it failed

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


class LocalScheduler(luigi.scheduler.Scheduler):
    """luigi's local scheduler (``--local-scheduler``), pruning its graph at most every
    LOCAL_PRUNE_SECONDS instead of on every ``get_work``. Pruning fails the tasks of
    workers gone silent, makes FAILED tasks PENDING after ``retry_delay`` and forgets DONE
    ones after ``remove_delay``: with the one worker of this process and delays of
    seconds or more, a second late changes nothing, while pruning on every call walks
    every task of the graph once per task the run ends (at 200 cohorts, 800 tasks: about
    a tenth of the scheduling's CPU)."""

    def __init__(self) -> None:
        super().__init__(prune_on_get_work=False, record_task_history=False)
        self._pruned_at = -LOCAL_PRUNE_SECONDS

    def get_work(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._pruned_at >= LOCAL_PRUNE_SECONDS:
            self._pruned_at = now
            self.prune()
        return super().get_work(*args, **kwargs)

    def count_pending(self, worker: str) -> dict[str, Any]:
        """luigi's reply, without its walk up every pending task's dependencies when no
        task is DISABLED: the walk only looks for a DISABLED one upstream (luigi answers
        every ``get_work`` with this count: two thirds of its time at 200 cohorts)."""
        state = self._state
        if next(iter(state.get_active_tasks_by_status(DISABLED)), None) is not None:
            return super().count_pending(worker)
        me = state.get_worker(worker)
        running = []
        for task in me.get_tasks(state, RUNNING):
            other = state.get_worker(task.worker_running)
            if other is not None:
                running.append({"task_id": task.id, "worker": str(other), **other.info})
        pending = list(me.get_tasks(state, PENDING, FAILED))
        return {
            "n_pending_tasks": len(pending),
            "n_unique_pending": sum(len(t.workers) == 1 for t in pending),
            "n_pending_last_scheduled": sum(t.workers.peek(last=True) == worker for t in pending),
            "worker_state": me.state,
            "running_tasks": running,
        }


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


class SchedulerLink:
    """The worker's scheduler as luigi's worker, its keep-alive thread and every task's
    status reporter see it: every call goes to ``scheduler``, but ``get_work`` goes
    through ``PipelineWorker.get_work`` (which outlives luigid), and the worker's
    registration (``add_worker``) is kept, to be sent again to a luigid that lost it.
    Only luigid's RPC interface is relied on, no private part of luigi's worker."""

    def __init__(self, scheduler: Any, worker: PipelineWorker) -> None:
        self.scheduler = scheduler
        self.worker = worker
        self.registration: tuple[Any, ...] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)

    def add_worker(self, worker: str, info: Any, **kwargs: Any) -> Any:
        self.registration = (worker, info)
        return self.scheduler.add_worker(worker, info, **kwargs)

    def add_worker_again(self) -> None:
        if self.registration is not None:
            self.scheduler.add_worker(*self.registration)

    def get_work(self, **kwargs: Any) -> Any:
        return self.worker.get_work(self.scheduler, **kwargs)


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
        if scheduler is None or isinstance(scheduler, luigi.scheduler.Scheduler):
            scheduler = _Serialized(scheduler or LocalScheduler())
        self.observer = observer
        self.is_assistant = bool(kwargs.get("assistant"))
        self.run_locks = RunLocks()
        self._finishing = False
        self._roots: list[luigi.Task] = []  # the tasks given to add() before run()
        self._in_run = False
        self._registering = False  # registering the run again with luigid
        self._known = True  # luigid counted a task of ours since the last registration
        self._stale = False  # a report may not have reached luigid: register again
        self.registrations = 0
        self._failed: dict[str, Any] = {}  # task id -> explanation, of tasks failed here
        self._done: set[str] = set()  # ids of tasks reported DONE
        self._orphans: dict[str, str] = {}  # task id -> the other worker running it at start
        self._registered_pending: set[str] = set()  # ids this run gave luigid as PENDING
        self._link = SchedulerLink(scheduler, self)
        cache_completions = kwargs.pop("cache_completions", False)
        super().__init__(scheduler=self._link, worker_processes=worker_processes, **kwargs)
        if cache_completions:
            # luigi's cache of tasks found or made complete (its [worker]
            # cache_task_completion), as a plain dict: every task runs in a thread of this
            # process, and luigi's own is a multiprocessing Manager, a forked process.
            self._task_completion_cache = {}

    def add(self, task: luigi.Task, *args: Any, **kwargs: Any) -> bool:
        if self._in_run or self._registering:
            return super().add(task, *args, **kwargs)
        self._roots.append(task)
        # Scheduling asks every task whether it is complete before anything runs: answer
        # for the run date's targets from one listing of its directory.
        layout = getattr(task, "layout", None)
        with storage.listed(layout.base) if layout is not None else contextlib.nullcontext():
            return super().add(task, *args, **kwargs)

    def run(self) -> bool:
        self._in_run = True
        if not self.is_assistant:
            # Asking luigid prunes it: a stopped run's tasks turn FAILED now if it has been
            # silent long enough, or stay RUNNING in it until then (waited for below).
            self._orphans = self._held_elsewhere()
            if self._failed_since_registered():
                self.register_again("luigid failed the tasks of a run that stopped")
        try:
            return super().run()
        finally:
            self._in_run = False

    def _add_task(self, *args: Any, **kwargs: Any) -> Any:
        task_id, status = kwargs.get("task_id", ""), kwargs.get("status")
        if self._registering:
            # luigid lost the run: say where each task really stands.
            if task_id in self._running_tasks:
                kwargs["status"] = RUNNING
            elif task_id in self._failed and status == PENDING:
                kwargs["status"], kwargs["expl"] = FAILED, self._failed[task_id]
            return super()._add_task(*args, **kwargs)
        if status == PENDING and not self._in_run:
            self._registered_pending.add(task_id)
        if self._finishing and status == FAILED:
            self._failed[task_id] = kwargs.get("expl")
        elif status == DONE:
            self._failed.pop(task_id, None)
            self._done.add(task_id)
        try:
            result = super()._add_task(*args, **kwargs)
        except luigi.rpc.RPCError as exc:
            if not self._in_run:
                raise
            # The task's outcome is on storage (targets) or in self._failed: luigid gets it
            # when the worker registers the run again.
            logger.warning("luigid did not take %s of %s: %s", status, task_id, exc)
            self._stale = True
            result = None
        task = self._scheduled_tasks.get(task_id)
        if self.observer is not None and task is not None:
            if self._finishing:
                self.observer.finished(task, status, kwargs.get("expl"))
            else:
                self.observer.scheduled(task, status)
        return result

    def get_work(self, scheduler: Any, **kwargs: Any) -> dict[str, Any]:
        """luigid's ``get_work`` for luigi's worker loop (through ``SchedulerLink``),
        registering the run again when luigid lost it; while tasks run here, a luigid that
        does not answer is an empty reply, not the end of the run."""
        running = kwargs.get("current_tasks") or []
        try:
            if self._stale:
                self.register_again("luigid missed reports of this worker")
            reply = scheduler.get_work(**kwargs)
            if self.is_assistant:
                return self._assisted(scheduler, reply, kwargs.get("worker"))
            while not running and self._held_by_assistant(scheduler, reply):
                # An assistant holds a task of this run (it took it before giving it back,
                # or runs it): wait for it rather than end the run as "run by another".
                time.sleep(1.0)
                reply = scheduler.get_work(**kwargs)
            if not running and self._orphans and reply.get("task_id") is None:
                reply = self._adopt_from_a_stopped_run(scheduler, reply, kwargs)
            if reply.get("n_pending_tasks"):
                self._known = True
            elif self._lost_run(scheduler, reply, kwargs.get("worker")):
                self.register_again("luigid no longer knows this run's tasks")
                reply = scheduler.get_work(**kwargs)
            return reply
        except luigi.rpc.RPCError as exc:
            if not running and not self.is_assistant:
                raise  # nothing runs here: luigi's retry window was the wait
            # Tasks run here: they go on (programs, cloud tasks); ask again later.
            logger.warning(
                "luigid unreachable, %d task(s) still running here; asking again: %s",
                len(running),
                exc,
            )
            self._stale = True
            return {
                "task_id": None,
                "running_tasks": [],
                "n_pending_tasks": 0,
                "n_unique_pending": 0,
                "n_pending_last_scheduled": 0,
                "worker_state": luigi.scheduler.WORKER_STATE_ACTIVE,
            }

    def _assisted(self, scheduler: Any, reply: dict[str, Any], worker_id: str | None) -> dict:
        """An assistant's reply. luigid hands an assistant any runnable task; this one
        runs only what no other worker is there for: a task of another module is failed
        in luigid with the reason (as luigi's assistant fails a task it cannot load; this
        one never imports it), and a task a live run (cron, `pipeline run`) scheduled is
        given back to it, PENDING, so that a run is never left to the assistant."""
        del self._get_work_response_history[:-KEPT_REPLIES]  # an always-on worker
        family, module = reply.get("task_family"), reply.get("task_module")
        ids = reply.get("batch_task_ids") or [t for t in [reply.get("task_id")] if t]
        if not ids:
            return reply
        if runs_here(module, family):
            wanted = [t for t in ids if self._wanted_elsewhere(scheduler, t, worker_id)]
            if not wanted:
                return reply
            for task_id in wanted:
                logger.info("giving %s back to the run that scheduled it", task_id)
                deps = (scheduler.dep_graph(task_id=task_id) or {}).get(task_id, {})
                scheduler.add_task(
                    worker=worker_id, task_id=task_id, status=PENDING, runnable=False,
                    new_deps=deps.get("deps") or None, assistant=True,
                )  # fmt: skip
        else:
            why = (
                f"not run: the survey pipeline's assistant runs tasks of {TASK_PACKAGE} only, "
                f"not {module}.{family}; run it with a worker of its own "
                f"(luigi --module {module} {family} ...)"
            )
            for task_id in ids:
                logger.warning("refusing %s: %s", task_id, why)
                scheduler.add_task(
                    worker=worker_id, task_id=task_id, status=FAILED, expl=why, runnable=False,
                    family=family, module=module, assistant=True,
                )  # fmt: skip
        return {k: v for k, v in reply.items() if k not in ("batch_id", "batch_task_ids")} | {
            "task_id": None
        }

    def _held_elsewhere(self) -> dict[str, str]:
        """This run's tasks that luigid lists as RUNNING in another run's worker, by that
        worker (an assistant holding one is waited for by ``_held_by_assistant``)."""
        try:
            listed = self._link.task_list(status=RUNNING, upstream_status="") or {}
            assistants = {
                w.get("name") for w in self._link.worker_list() or [] if w.get("assistant")
            }
        except luigi.rpc.RPCError:
            return {}
        return {
            task_id: str(info.get("worker_running"))
            for task_id, info in listed.items()
            if task_id in self._scheduled_tasks and isinstance(info, dict)
            and info.get("worker_running") not in (None, self._id, *assistants)
        }  # fmt: skip

    def _failed_since_registered(self) -> bool:
        """luigid lists as FAILED a task this run gave it as PENDING moments ago (which
        made an earlier failure PENDING again): luigid failed it since, when it pruned the
        stopped run that was running it."""
        try:
            failed = self._link.task_list(status=FAILED, upstream_status="") or {}
        except luigi.rpc.RPCError:
            return False
        return any(t in self._registered_pending and t not in self._failed for t in failed)

    def _adopt_from_a_stopped_run(
        self, scheduler: Any, reply: dict[str, Any], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Nothing to run yet, but other workers held tasks of this run when it started.
        When they have stopped (a run killed moments ago), wait for luigid to release
        their tasks, then register them again: this run adopts the programs that finished
        and re-attaches to those still running. A live run holding them is left alone."""
        first_seen: dict[str, tuple[Any, float]] = {}
        deadline = time.monotonic() + ORPHAN_WAIT
        told = False
        while time.monotonic() < deadline:
            held = {t: w for t, w in self._held_elsewhere().items() if t in self._orphans}
            if set(self._orphans) - set(held):
                self._orphans = {}
                self.register_again("luigid released the tasks of a run that stopped")
                return scheduler.get_work(**kwargs)
            stopped = self._stopped(scheduler, set(held.values()), first_seen)
            if not held or stopped is False:
                break  # nothing held any more, or a live run holds them: luigi's way
            if not told:
                logger.warning(
                    "%d task(s) of this run are RUNNING in luigid under worker(s) %s, which "
                    "stopped answering: waiting for luigid to release them ([scheduler] "
                    "worker_disconnect_delay), then adopting or re-attaching their programs",
                    len(held), ", ".join(sorted(set(held.values()))),
                )  # fmt: skip
                told = True
            time.sleep(1.0)
            reply = scheduler.get_work(**kwargs)  # keeps this worker active in luigid
            if reply.get("task_id") is not None:
                return reply
        self._orphans = {}
        return reply

    @staticmethod
    def _stopped(
        scheduler: Any, workers: set[str], first_seen: dict[str, tuple[Any, float]]
    ) -> bool | None:
        """True when every worker in ``workers`` has stopped (luigid no longer lists it,
        or its last contact has not moved for GONE_AFTER seconds of watching), False when
        one is alive, None while undecided. Compares luigid's own timestamps with each
        other, never with this host's clock."""
        listed = {w.get("name"): w.get("last_active") for w in scheduler.worker_list() or []}
        now, verdicts = time.monotonic(), []
        for worker in workers:
            if worker not in listed:
                verdicts.append(True)
                continue
            seen, since = first_seen.setdefault(worker, (listed[worker], now))
            if listed[worker] != seen:
                return False
            verdicts.append(True if now - since >= GONE_AFTER else None)
        return True if all(verdicts) else None

    @staticmethod
    def _held_by_assistant(scheduler: Any, reply: dict[str, Any]) -> bool:
        """No task for this worker, but one of its tasks is held by an assistant."""
        if reply.get("task_id") is not None or "batch_id" in reply:
            return False
        held = {str(t.get("worker")) for t in reply.get("running_tasks") or []}
        if not held:
            return False
        workers = scheduler.worker_list(include_running=False) or []
        return any(w.get("assistant") and w.get("name") in held for w in workers)

    @staticmethod
    def _wanted_elsewhere(scheduler: Any, task_id: str, worker_id: str | None) -> bool:
        """A worker luigid counts as live (not an assistant) scheduled ``task_id``."""
        found = scheduler.task_search(task_str=task_id) or {}
        info = next((t[task_id] for t in found.values() if task_id in t), {})
        return bool(set(info.get("workers") or []) - {worker_id})

    def _lost_run(self, scheduler: Any, reply: dict[str, Any], worker_id: str | None) -> bool:
        """luigid counts no pending task of ours and has none for us: did it lose the run?"""
        if (
            reply.get("task_id") is not None
            or "batch_id" in reply
            or reply.get("worker_state", luigi.scheduler.WORKER_STATE_ACTIVE)
            != luigi.scheduler.WORKER_STATE_ACTIVE
            or not self._known  # registered again since luigid last counted our tasks
            or self.registrations >= MAX_REGISTRATIONS
        ):
            return False
        for root in self._roots:
            if root.task_id in self._running_tasks or root.task_id in self._done:
                continue
            found = scheduler.task_search(task_str=root.task_id) or {}
            info = next((t[root.task_id] for t in found.values() if root.task_id in t), None)
            if info is None:
                return True  # luigid never heard of the run
            ours = worker_id in (info.get("workers") or []) or (
                info.get("worker_running") == worker_id
            )
            if info.get("status") in (PENDING, FAILED) and not ours:
                return True  # a state file of another time: the task is not ours in it
        return False

    def register_again(self, why: str) -> None:
        """Register the run with luigid again, through luigi's normal ``add`` path."""
        logger.warning(
            "%s: registering the run again (%d task(s) running here)",
            why,
            len(self._running_tasks),
        )
        self._registering = True
        try:
            self._link.add_worker_again()
            for root in self._roots:
                self.add(root)
            for process in list(self._running_tasks.values()):
                replay = getattr(process.status_reporter, "replay", None)
                if replay is not None:
                    replay()
        finally:
            self._registering = False
        self.registrations += 1
        self._stale = False
        self._known = False

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
        if not self.is_assistant:
            # Tell luigid this worker is gone, so that an assistant may take what it
            # leaves (a failed task someone forgives) now rather than once luigid notices
            # (worker_disconnect_delay); its tasks stay, and so does their history.
            with contextlib.suppress(Exception):
                self._scheduler.scheduler.disable_worker(worker=self._id)
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
        if self.is_assistant and callable(task.run) and hasattr(task, "layout"):
            # As a local run of the date would: refuse while another process holds it.
            task.run = self._locked(task, task.run)
        return TaskThread(process)

    def _locked(self, task: luigi.Task, run: Any) -> Any:
        def run_locked(*args: Any, **kwargs: Any) -> Any:
            with self.run_locks.holding(task.layout):
                return run(*args, **kwargs)

        return run_locked

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

    def __init__(self, observer: Observer | None = None, **worker_config: Any) -> None:
        self.observer = observer
        self.worker_config = worker_config  # luigi's [worker] settings, e.g. keep_alive

    def create_local_scheduler(self) -> LocalScheduler:
        return LocalScheduler()

    def create_worker(self, scheduler: Any, worker_processes: int, assistant: bool = False) -> Any:
        return PipelineWorker(
            scheduler=scheduler,
            worker_processes=worker_processes,
            assistant=assistant,
            observer=self.observer,
            **self.worker_config,
        )
