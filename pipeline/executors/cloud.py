"""What the ECS and Batch executors share: submit, watch, stop, logs, cost, leases.

``CloudExecutor.run`` is the whole life of one cloud run:

1. hold this process's lease (``lease.py``) and tag the task with it and a deadline;
2. submit ``python -m pipeline.wrapper --job URI`` (the backend: ECS ``RunTask`` or
   Batch ``SubmitJob``) and show its console link and CloudWatch log link in luigid;
3. wait while a per-process ``Watcher`` thread polls every running task of this process
   with batched describe calls (up to 100 ids each) and exponential backoff;
4. stop the task (``StopTask``/``TerminateJob``) when the deadline passes, when the
   worker is interrupted (SIGTERM/SIGINT, luigi's task timeout), when luigi's worker
   process dies, or on any error while watching; then re-raise;
5. copy the CloudWatch log tail into the local log, and return a ``RunRecord`` with the
   container's real exit code, the reason when it failed, and the cost;
6. when the infrastructure ended the task (``TaskState.interruption``: a Fargate Spot
   interruption, a lost host) and the executor allows more submissions
   (``max_submissions``), submit the same job document again and keep the abandoned
   attempt's record in ``RunRecord.interrupted``. A program's own exit is never retried.
   Under ``spot = "first"`` (the spec's ``spot``, else ``[ecs]``/``[batch] spot``) the
   first submission runs on Spot capacity and every later one on on-demand
   (``capacity``): an interruption never meets a second Spot attempt.

Before step 3, a submission the service could not place now (``CapacityUnavailable``:
ECS ``RunTask`` failures such as ``RESOURCE:CPU``, or throttling past every retry) is
tried again after a jittered exponential backoff until the cohort's deadline, each wait
shown in luigid; no task exists while it waits, and an interrupt ends the wait at once.

``CloudExecutor.reattach`` is steps 3-6 for a task a killed orchestrator left running
(``find_running`` finds it by its tags): the restarted worker renews the task's own
lease id next to its own (``LeaseKeeper.adopt``), so the reaper keeps the task; an
interruption of the re-attached task is submitted again from the submission its
``submission`` tag names (``submission_of``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline import config, storage
from pipeline.core.job import CAPACITY_ENV
from pipeline.core.spec import ProgramSpec
from pipeline.errors import ConfigError, PipelineError
from pipeline.executors import aws, lease
from pipeline.executors.base import (
    ON_DEMAND,
    SPOT,
    Candidate,
    Events,
    Interrupted,
    Job,
    RunningTask,
    RunRecord,
    estimate_cost,
    holding,
    interrupts_as_exceptions,
    shutdown_reason,
    slots,
    spot_mode,
    stops_with_shutdown,
)
from pipeline.wrapper import EXIT_DEADLINE

log = logging.getLogger("pipeline.executors")

EXIT_OOM = 137  # SIGKILL: what an out-of-memory container exits with
ERROR_LOG_LINES = 15  # log lines put into RunRecord.error (the reason line comes after)
STOP_PATIENCE = 300.0  # seconds to wait for a task we stopped to report STOPPED
DEFAULT_MAX_RUNNING = 500  # cloud tasks one orchestrator runs at once ([ecs]/[batch] max_running)


def running_slots(executor: str) -> threading.BoundedSemaphore:
    """At most ``[<executor>] max_running`` tasks of this process run at once."""
    limit = int(config.get_float(executor, "max_running", DEFAULT_MAX_RUNNING))
    if limit < 1:
        raise ConfigError(f"[{executor}] max_running must be at least 1, not {limit}")
    return slots(f"{executor} max_running", limit)


class CloudError(PipelineError):
    """A cloud API call failed (submit, describe, stop): says which call, task and why."""


class CapacityUnavailable(CloudError):
    """The service started no task because it has no capacity for it now (ECS ``RunTask``
    failures ``RESOURCE:CPU``, ``AGENT``, "Capacity is unavailable ...") or kept refusing
    the call (throttling, 5xx, the network): worth trying again later. ``answered`` says
    the service answered (no task was started), so the next call may use a new
    idempotency token; False when the call may have started a task."""

    def __init__(self, message: str, *, reason: str, answered: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.answered = answered


class WorkerGone(Interrupted):
    """luigi's worker process died while this task process watched a cloud task."""


@dataclass
class TaskState:
    """One poll's view of a task or job, the same for ECS and Batch."""

    id: str
    status: str  # the provider's status: PENDING/RUNNING/STOPPED, SUBMITTED/.../SUCCEEDED
    done: bool = False
    exit_code: int | None = None
    reason: str = ""  # why it stopped: stop code, status reason, container reason
    log_stream: str = ""
    log_group: str = ""
    started_at: float | None = None  # epoch seconds, when the provider reports them
    stopped_at: float | None = None
    billed_seconds: float | None = None  # seconds the provider ran it (all attempts)
    missing: bool = False  # the provider no longer knows the id
    # Set when the infrastructure, not the program, ended the task (a Fargate Spot
    # interruption, a lost EC2 host): worth resubmitting. "" otherwise.
    interruption: str = ""
    image: str = ""  # the container image reference the service ran
    image_digest: str = ""  # sha256:... of that image, when the service reports it


@dataclass
class Watch:
    """A task being watched: the latest state and an event set on every change."""

    id: str
    interval: float
    next_poll: float
    state: TaskState | None = None
    error: BaseException | None = None
    changed: threading.Event = field(default_factory=threading.Event)
    polls: int = 0


class Watcher:
    """Polls every watched task of this process with batched describe calls.

    One daemon thread per process and executor kind. Each watched task has its own
    backoff (``min_interval`` growing ×1.5 to ``max_interval``); when a poll is due, every
    task due within half its interval rides along, so concurrent tasks share calls of up
    to 100 ids. Throttling and other transient errors back the whole watcher off; other
    errors are handed to the tasks' waiters, which stop their tasks and fail.
    """

    def __init__(
        self,
        describe: Callable[[list[str]], dict[str, TaskState]],
        *,
        min_interval: float,
        max_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.describe = describe
        self.min_interval, self.max_interval = min_interval, max(min_interval, max_interval)
        self.clock = clock
        self.calls = 0
        self._watches: dict[str, Watch] = {}
        self._cond = threading.Condition()
        self._penalty = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="cloud-watcher", daemon=True)
        self._thread.start()

    def watch(self, task_id: str) -> Watch:
        with self._cond:
            w = Watch(task_id, self.min_interval, self.clock() + self.min_interval)
            self._watches[task_id] = w
            self._cond.notify_all()
            return w

    def unwatch(self, task_id: str) -> None:
        with self._cond:
            self._watches.pop(task_id, None)

    def close(self, timeout: float | None = None) -> None:
        """Stop polling (the thread ends); with ``timeout``, wait up to that long for a
        describe call in flight to finish."""
        with self._cond:
            self._closed = True
            self._watches.clear()
            self._cond.notify_all()
        if timeout is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _due(self) -> list[Watch]:
        now = self.clock()
        return [w for w in self._watches.values() if w.next_poll - w.interval / 2 <= now]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._watches:
                        now = self.clock()
                        wake = min(w.next_poll for w in self._watches.values()) + self._penalty
                        if wake <= now:
                            break
                        self._cond.wait(timeout=wake - now)
                    else:
                        self._cond.wait()
                due = self._due()
            self._poll(due)

    def _poll(self, due: list[Watch]) -> None:
        for batch in aws.chunks(due):
            ids = [w.id for w in batch]
            try:
                self.calls += 1
                states = self.describe(ids)
                self._penalty = 0.0
            except Exception as exc:
                if aws.is_transient(exc):
                    self._penalty = min(
                        self.max_interval * 2, max(self.min_interval, 2 * self._penalty)
                    )
                    log.warning("describe throttled or failed (%s); backing off %.1fs",
                                aws.describe_error(exc), self._penalty)  # fmt: skip
                    now = self.clock()
                    for w in batch:
                        w.next_poll = now + w.interval
                    continue
                now = self.clock()
                for w in batch:
                    w.error = w.error or exc
                    w.next_poll = now + w.interval
                    w.changed.set()
                continue
            now = self.clock()
            for w in batch:
                w.polls += 1
                state = states.get(w.id)
                if state is None:  # not in the answer at all: treat as gone
                    state = TaskState(w.id, "MISSING", done=True, missing=True,
                                      reason="the task is unknown to the service")  # fmt: skip
                previous = w.state
                w.state = state
                w.interval = min(self.max_interval, w.interval * 1.5)
                w.next_poll = now + w.interval
                if previous is None or previous.status != state.status or state.done:
                    w.changed.set()


_watchers_lock = threading.Lock()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM/SIGINT while a task is being stopped, so a second signal cannot cut
    the stop short; a held signal is delivered (and raises) right after."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def wrapper_command(job: Job) -> list[str]:
    return [*aws.WRAPPER_COMMAND, job.job_uri]


def task_environment(job: Job) -> dict[str, str]:
    """What the container gets besides its command: identifiers only, never secrets (the
    task role grants access)."""
    return {
        "PIPELINE_RUN_DATE": job.run_date,
        "PIPELINE_COHORT": job.cohort,
        "PIPELINE_ATTEMPT": job.attempt,
        "PIPELINE_JOB": job.job_uri,
    }


def task_tags(
    job: Job, *, lease_id: str, lease_root: str, deadline: float, submission: int = 1
) -> dict[str, str]:
    """Tags of every task/job: what the reaper, cost reports and people filter on."""
    key, value = aws.PIPELINE_TAG
    return {
        key: value,
        "run_date": job.run_date,
        "cohort": job.cohort,
        "program": f"{job.spec.name}-{job.spec.version}",
        "attempt": job.attempt,
        "spec": job.spec.fingerprint,  # a restart re-attaches only to the same spec
        "lease": lease_id,
        "lease_store": lease_root,
        "deadline": str(int(deadline)),
        "submission": str(submission),  # a restart that re-attaches goes on counting
    }


def submission_of(tags: dict[str, str]) -> int:
    """Which submission of its job a task is, from its tags. A task submitted before the
    ``submission`` tag existed: an on-demand one under ``spot = "first"`` (the only
    capacity tag that is not Spot) was at least the second, any other the first."""
    if tags.get("submission", "").isdigit():
        return int(tags["submission"])
    return 2 if tags.get("capacity") == ON_DEMAND else 1


def deadline_grace() -> float:
    """Seconds a task may outlive its spec timeout (start-up, queueing, the wrapper's own
    SIGTERM grace) before the executor and the reaper stop it."""
    return config.get_float("reaper", "deadline_grace", 900.0)


def require_s3_root(executor: str) -> str:
    root = config.storage_root()
    if not storage.is_s3(root):
        raise ConfigError(
            f"the {executor} executor needs [storage] root = s3://bucket/prefix (or "
            f"PIPELINE_STORAGE_ROOT): containers cannot read the local path {root!r}"
        )
    return root


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class CloudExecutor:
    """Base of the ECS and Batch executors; subclasses implement the provider calls."""

    name = "cloud"

    def __init__(
        self,
        *,
        poll_interval: float,
        poll_max_interval: float,
        log_lines: int,
        capacity_retry_initial: float = 5.0,
        capacity_retry_max: float = 60.0,
    ) -> None:
        self.poll_interval, self.poll_max_interval = poll_interval, poll_max_interval
        self.log_lines = log_lines
        # Seconds between submissions the service could not place (CapacityUnavailable).
        self.capacity_retry_initial = capacity_retry_initial
        self.capacity_retry_max = max(capacity_retry_initial, capacity_retry_max)
        # Seconds past the spec's timeout before we stop a task; None = [reaper] setting.
        self.deadline_grace: float | None = None
        self._logs: Any = None
        self._logs_lock = threading.Lock()
        self._watcher: Watcher | None = None
        self._watcher_pid = 0
        # Definitions derived for a spec's image, by image (definition_for).
        self._definitions: dict[str, str] = {}
        self._definition_locks: dict[str, threading.Lock] = {}
        self._definitions_lock = threading.Lock()
        # This cohort's tasks a killed orchestrator left running (find_running).
        self._running_cache: tuple[float, list[Candidate]] | None = None
        self._running_lock = threading.Lock()

    def definition_for(self, image: str, configured: str) -> str:
        """The task/job definition that runs ``image``: ``configured`` when the spec names
        no image, else the one ``_derive(image)`` finds or registers — once per process
        and image, however many cohorts' threads ask at the same time."""
        if not image:
            return configured
        with self._definitions_lock:
            if image in self._definitions:
                return self._definitions[image]
            lock = self._definition_locks.setdefault(image, threading.Lock())
        with lock:
            with self._definitions_lock:
                if image in self._definitions:
                    return self._definitions[image]
            arn = self._derive(image)
            with self._definitions_lock:
                self._definitions[image] = arn
            return arn

    def _derive(self, image: str) -> str:
        raise NotImplementedError

    # -- provider specifics -------------------------------------------------------------
    def submit(self, job: Job, command: list[str], env: dict[str, str],
               tags: dict[str, str], deadline: float, *, submission: int = 1,
               capacity: str = "") -> str:  # fmt: skip
        """Start the task; ``submission`` counts resubmissions after interruptions (1, 2,
        ...) so that a provider's idempotency token differs between them; ``capacity``
        is ``spot`` or ``on_demand`` under ``spot = "first"``, "" for the configured
        capacity. A provider that raises ``CapacityUnavailable`` also takes
        ``placement``: 1 + the answers that placed nothing so far for this submission (a
        new token after each)."""
        raise NotImplementedError

    def max_submissions(self, job: Job | None = None) -> int:
        """How often one job may be submitted when the infrastructure interrupts it (1:
        never resubmitted, e.g. Batch, which retries lost hosts itself)."""
        return 1

    def configured_capacity(self) -> str:
        """``spot`` or ``on_demand``: what the configured capacity (not ``spot =
        "first"``) is."""
        return ON_DEMAND

    def spot_first(self, job: Job) -> bool:
        configured = str(getattr(getattr(self, "settings", None), "spot", "") or "")
        return spot_mode(self.name, job.spec, configured) == "first"

    def capacity(self, job: Job, submission: int) -> str:
        """The capacity of ``submission``: under ``spot = "first"`` Spot for the first,
        on-demand for every later one; else the configured capacity."""
        if self.spot_first(job):
            return SPOT if submission == 1 else ON_DEMAND
        return self.configured_capacity()

    def job_image(self, job: Job) -> str:
        """The image reference the job's task runs, as far as the executor knows it before
        the service reports one ("" if unknown)."""
        return ""

    def describe(self, ids: list[str]) -> dict[str, TaskState]:
        raise NotImplementedError

    def stop(self, task_id: str, reason: str) -> None:
        raise NotImplementedError

    def console_url(self, task_id: str) -> str:
        raise NotImplementedError

    def log_location(self, task_id: str, state: TaskState | None) -> tuple[str, str]:
        """(log group, log stream) of the task's container, or ("", "") if unknown."""
        return (state.log_group, state.log_stream) if state else ("", "")

    def running(self) -> list[Candidate]:
        """Every pipeline task or job the provider still runs (or queues), with its tags."""
        raise NotImplementedError

    def region(self) -> str:
        raise NotImplementedError

    def where(self) -> str:
        """Short text for status messages and RunRecord.host (cluster or queue)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    @property
    def logs(self) -> Any:
        # Made once: the cohorts whose programs end together would each make one (a
        # client costs more CPU than a dozen requests; 200 at once stalled a run).
        if self._logs is None:
            with self._logs_lock:
                if self._logs is None:
                    self._logs = aws.logs_client()
        return self._logs

    def watcher(self) -> Watcher:
        """This executor's watcher in this process (made again after ``fork``)."""
        with _watchers_lock:
            if self._watcher is None or self._watcher_pid != os.getpid():
                self._watcher = Watcher(
                    self.describe,
                    min_interval=self.poll_interval,
                    max_interval=self.poll_max_interval,
                )
                self._watcher_pid = os.getpid()
            return self._watcher

    def log_url(self, task_id: str, state: TaskState | None) -> str:
        group, stream = self.log_location(task_id, state)
        return aws.log_stream_url(self.region(), group, stream) if group and stream else ""

    def run(self, job: Job, events: Events) -> RunRecord:
        root = require_s3_root(self.name)
        return self._leased(job, events, root, lambda keeper, lease_id: self._run(
            job, events, keeper, lease_id, root))  # fmt: skip

    # -- re-attaching after a restart ----------------------------------------------------
    def find_running(self, run_date: str, cohort: str, spec: ProgramSpec) -> RunningTask:
        """This cohort's task or job of this spec that the provider still runs under this
        storage root — what a killed orchestrator left behind — or ``RunningTask("", {})``
        when there is none. One listing serves every cohort of a restart."""
        root = require_s3_root(self.name)
        with self._running_lock:
            if self._running_cache is None or time.monotonic() - self._running_cache[0] > 10:
                self._running_cache = (time.monotonic(), self.running())
            listed = self._running_cache[1]
        program = f"{spec.name}-{spec.version}"
        for task in listed:
            tags = task.tags
            if (
                tags.get("run_date") == run_date
                and tags.get("cohort") == cohort
                and tags.get("program") == program
                and tags.get("spec") == spec.fingerprint
                and (tags.get("lease_store") or root) == root
                and tags.get("attempt")
            ):
                return RunningTask(task.id, tags)
        return RunningTask("", {})

    def reattach(self, job: Job, task_id: str, tags: dict[str, str], events: Events) -> RunRecord:
        """Take over a task a killed orchestrator submitted for ``job``: renew its lease
        (so the reaper keeps it), watch it to its end with its own deadline, and return
        its record, exactly as ``run`` would have."""
        root = require_s3_root(self.name)

        def follow(keeper: lease.LeaseKeeper, lease_id: str) -> RunRecord:
            old = tags.get("lease", "")
            if old:
                keeper.adopt(old)  # written now, renewed with ours; expires after disown
            try:
                deadline = float(tags.get("deadline") or 0) or time.time() + (
                    job.spec.timeout_seconds + deadline_grace()
                )
                with job.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(
                        f"[{self.name}] {datetime.now(UTC).isoformat(timespec='seconds')} "
                        f"re-attached to {task_id} ({self.where()}) left by lease {old}; "
                        f"lease {keeper.lease_id} deadline {_iso(deadline)}\n"
                    )
                record, state, stopped_by_us = self._follow(
                    job, events, keeper, task_id, deadline, time.time(), verb="re-attached to",
                    capacity=tags.get("capacity", ""),
                )  # fmt: skip
                # Interrupted after the restart (a Spot reclaim hours in): submitted again,
                # counting on from the re-attached submission, as the killed run would have.
                submission = submission_of(tags)
                if self._submit_again(job, events, record, state, stopped_by_us, submission):
                    return self._run(job, events, keeper, lease_id, root,
                                     submission=submission + 1, interrupted=[record])  # fmt: skip
                return record
            finally:
                if old:
                    keeper.disown(old)

        return self._leased(job, events, root, follow)

    def _leased(
        self,
        job: Job,
        events: Events,
        root: str,
        body: Callable[[lease.LeaseKeeper, str], RunRecord],
    ) -> RunRecord:
        """``body`` holding a running slot and this process's lease."""
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        waiting = f"waiting: [{self.name}] max_running tasks already run"
        with interrupts_as_exceptions(), holding(running_slots(self.name), events, waiting):
            keeper = lease.keeper(root)
            lease_id = keeper.acquire()
            try:
                return body(keeper, lease_id)
            finally:
                keeper.release()

    def _run(
        self,
        job: Job,
        events: Events,
        keeper: lease.LeaseKeeper,
        lease_id: str,
        root: str,
        *,
        submission: int = 1,
        interrupted: list[RunRecord] | None = None,
    ) -> RunRecord:
        """Submit, and submit the same job document again while the infrastructure (not the
        program) ended it and submissions remain. The interrupted container uploaded no
        finished outputs (the wrapper uploads at its end, ``manifest.json`` last), and the
        new attempt overwrites whatever it did upload. ``submission``/``interrupted``: where
        a restart goes on from after its re-attached task was interrupted."""
        interrupted = list(interrupted or [])
        while True:
            record, state, stopped_by_us = self._run_once(
                job, events, keeper, lease_id, root, submission
            )
            if self._submit_again(job, events, record, state, stopped_by_us, submission):
                interrupted.append(record)
                submission += 1
                continue
            record.interrupted = interrupted
            return record

    def _submit_again(
        self,
        job: Job,
        events: Events,
        record: RunRecord,
        state: TaskState,
        stopped_by_us: str,
        submission: int,
    ) -> bool:
        """Whether the infrastructure (not the program, not us) ended ``submission`` and
        another one is allowed; if so, records the interruption and says so everywhere."""
        limit = max(1, self.max_submissions(job))
        if not (
            state.interruption
            and not stopped_by_us
            and record.exit_code != 0
            and submission < limit
        ):
            return False
        record.interruption = state.interruption
        log.warning("cohort %s: %s %s interrupted (%s); submitting again (%d of %d)",
                    job.cohort, self.name, record.job_id, state.interruption,
                    submission + 1, limit)  # fmt: skip
        again = self.capacity(job, submission + 1).replace("_", "-")
        events.status(
            f"{job.spec.name} {job.spec.version} interrupted on {self.name} "
            f"{_short(record.job_id)} ({state.interruption}); submitting again "
            f"({submission + 1} of {limit}, {again})"
        )
        with job.log_path.open("a", encoding="utf-8") as fh:
            fh.write(
                f"[{self.name}] {datetime.now(UTC).isoformat(timespec='seconds')} "
                f"{record.job_id} interrupted: {state.interruption}; submitting the "
                f"same job again ({submission + 1} of {limit}) on {again} capacity\n"
            )
        return True

    def _run_once(
        self,
        job: Job,
        events: Events,
        keeper: lease.LeaseKeeper,
        lease_id: str,
        root: str,
        submission: int,
    ) -> tuple[RunRecord, TaskState, str]:
        """One submission to its end: the record, the last state and why we stopped it."""
        spec = job.spec
        first = time.time()
        grace = self.deadline_grace if self.deadline_grace is not None else deadline_grace()
        # The cohort's deadline, fixed at its first call: waiting for capacity counts
        # against it like a task that stays PENDING.
        deadline = first + spec.timeout_seconds + grace
        capacity = self.capacity(job, submission)
        tags = task_tags(
            job, lease_id=lease_id, lease_root=root, deadline=deadline, submission=submission
        )
        env = task_environment(job)
        chosen: dict[str, str] = {}
        if self.spot_first(job) or capacity == SPOT:
            # The wrapper watches for Spot notices and records the capacity; the tag is
            # for people and a restart's record.
            tags["capacity"] = env[CAPACITY_ENV] = capacity
            chosen = {"capacity": capacity} if self.spot_first(job) else {}
        task_id = ""
        placement, waits = 1, 0
        try:
            while True:
                submitted = time.time()
                try:
                    # A signal arriving mid-submit is held until the id is known, then
                    # raised here: the except clause below then has a task to stop.
                    with signals_held():
                        task_id = self.submit(
                            job, wrapper_command(job), env, tags, deadline,
                            submission=submission, **chosen,
                            **({"placement": placement} if placement > 1 else {}),
                        )  # fmt: skip
                    break
                except CapacityUnavailable as exc:  # no task exists: wait, then again
                    waits += 1
                    placement += 1 if exc.answered else 0
                    self._wait_for_capacity(job, events, keeper, exc, waits, first, deadline)
            self._log_header(job, task_id, self.console_url(task_id), tags)
        except BaseException as exc:
            if task_id:
                why = _stop_reason(exc)
                with signals_held():
                    self._stop_quietly(task_id, why)
            raise
        return self._follow(job, events, keeper, task_id, deadline, submitted,
                            verb="submitted to", capacity=capacity)  # fmt: skip

    def capacity_delay(self, retry: int) -> float:
        """Seconds before ``retry`` (1, 2, ...) of a submission the service could not
        place: a random 50-100 % of ``capacity_retry_initial`` × 2^(retry-1), at most
        ``capacity_retry_max`` (the jitter spreads cohorts that failed together)."""
        ceiling = min(self.capacity_retry_max, self.capacity_retry_initial * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _wait_for_capacity(
        self,
        job: Job,
        events: Events,
        keeper: lease.LeaseKeeper,
        exc: CapacityUnavailable,
        retry: int,
        first: float,
        deadline: float,
    ) -> None:
        """Wait before ``retry`` after ``exc``, saying so in luigid and the run log; raise
        ``CloudError`` instead when that retry would come at or after ``deadline``."""
        delay = self.capacity_delay(retry)
        now = time.time()
        waited = _duration(now - first)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        if now + delay >= deadline:
            message = (
                f"{self.name}: no capacity for cohort {job.cohort} ({self.where()}) within its "
                f"deadline {_iso(deadline)}: waited {waited} over {retry} call"
                f"{'s' if retry > 1 else ''}; last reason: {exc.reason}"
            )
            with contextlib.suppress(OSError), job.log_path.open("a", encoding="utf-8") as fh:
                fh.write(f"[{self.name}] {stamp} {message}\n")
            raise CloudError(message) from None
        shown = f"{delay:.0f} s" if delay >= 10 else f"{delay:.1f} s"
        events.status(
            f"{job.spec.name} {job.spec.version} waiting for {self.name.upper()} capacity "
            f"({exc.reason}) on {self.where()}, retry {retry} in {shown}, {waited} so far"
        )
        log.warning("cohort %s: %s; retry %d in %.1fs (%s so far, deadline %s)",
                    job.cohort, exc, retry, delay, waited, _iso(deadline))  # fmt: skip
        with contextlib.suppress(OSError), job.log_path.open("a", encoding="utf-8") as fh:
            fh.write(
                f"[{self.name}] {stamp} no capacity ({exc.reason}); retry {retry} in {shown}, "
                f"{waited} so far\n"
            )
        self._pause(delay, keeper)

    def _pause(self, seconds: float, keeper: lease.LeaseKeeper) -> None:
        """Sleep ``seconds``, but raise at once on a shutdown request (``Interrupted``) or
        when luigi's worker process is gone (``WorkerGone``); a signal in the main thread
        raises from its handler in the middle of the wait."""
        owner_alive = lease.owner_check()
        woken = threading.Event()
        end = time.monotonic() + seconds
        with stops_with_shutdown(woken.set):
            while True:
                if shutdown_reason():
                    raise Interrupted(shutdown_reason())
                if not owner_alive() or keeper.owner_gone.is_set():
                    raise WorkerGone("luigi's worker process is gone")
                left = end - time.monotonic()
                if left <= 0:
                    return
                woken.wait(min(left, 0.5))

    def _follow(
        self,
        job: Job,
        events: Events,
        keeper: lease.LeaseKeeper,
        task_id: str,
        deadline: float,
        submitted: float,
        *,
        verb: str,
        capacity: str = "",
    ) -> tuple[RunRecord, TaskState, str]:
        """Watch a submitted (or re-attached) task to its end; stop it on any error.
        Returns its record, its last state and why we stopped it ("" if we did not)."""
        watch: Watch | None = None
        try:
            console = self.console_url(task_id)
            events.tracking_url(console)
            events.status(
                f"{job.spec.name} {job.spec.version} {verb} {self.name} "
                f"{_short(task_id)} ({self.where()})"
            )
            watch = self.watcher().watch(task_id)
            state, stopped_by_us = self._wait(job, events, keeper, watch, task_id, deadline)
        except BaseException as exc:
            if task_id:
                why = _stop_reason(exc)
                with signals_held():
                    self._stop_quietly(task_id, why)
                    last = watch.state if watch else None
                    self._copy_log_tail(job, task_id, last, note=f"stopped: {why}")
            raise
        finally:
            if task_id:
                self.watcher().unwatch(task_id)
        finished = time.time()
        lines = self._copy_log_tail(job, task_id, state)
        record = self._record(job, task_id, state, submitted, finished, lines, stopped_by_us,
                              capacity or self.configured_capacity())  # fmt: skip
        return record, state, stopped_by_us

    def _wait(
        self,
        job: Job,
        events: Events,
        keeper: lease.LeaseKeeper,
        watch: Watch,
        task_id: str,
        deadline: float,
    ) -> tuple[TaskState, str]:
        """Until the task is done; returns its last state and why we stopped it ("" if we
        did not)."""
        owner_alive = lease.owner_check()
        shown = ""
        stopped_by_us = ""
        while True:
            # Short waits keep signals, the deadline and the owner check responsive.
            watch.changed.wait(timeout=0.5)
            watch.changed.clear()
            if watch.error is not None:
                raise CloudError(
                    f"{self.name}: cannot watch {task_id}: {aws.describe_error(watch.error)}"
                ) from watch.error
            state = watch.state
            if state is not None and state.status != shown:
                shown = state.status
                url = self.log_url(task_id, state)
                events.status(
                    f"{job.spec.name} {job.spec.version} {state.status} on {self.name} "
                    f"{_short(task_id)} ({self.where()})" + (f" — logs: {url}" if url else "")
                )
            if state is not None and state.done:
                return state, stopped_by_us
            if not owner_alive() or keeper.owner_gone.is_set():
                raise WorkerGone("luigi's worker process is gone")
            if shutdown_reason():
                raise Interrupted(shutdown_reason())
            if not stopped_by_us and time.time() > deadline:
                stopped_by_us = f"deadline {_iso(deadline)} passed (spec timeout + grace)"
                self._stop_quietly(task_id, stopped_by_us)
            elif stopped_by_us and time.time() > deadline + STOP_PATIENCE:
                raise CloudError(f"{self.name}: {task_id} did not stop after its deadline")

    def _stop_quietly(self, task_id: str, reason: str) -> None:
        """Stop the task; a failure is logged, not raised: the lease is released next and
        the reaper stops what we could not."""
        try:
            aws.with_backoff(
                lambda: self.stop(task_id, f"survey-pipeline: {reason}"[:255]),
                retry_if=aws.is_transient,
                attempts=4,
            )
            log.info("stopped %s: %s", task_id, reason)
        except Exception as exc:
            log.error("could not stop %s (%s); `pipeline reap` will once its lease expires",
                      task_id, aws.describe_error(exc))  # fmt: skip

    def _log_header(self, job: Job, task_id: str, console: str, tags: dict[str, str]) -> None:
        with job.log_path.open("a", encoding="utf-8") as fh:
            fh.write(
                f"[{self.name}] {datetime.now(UTC).isoformat(timespec='seconds')} submitted "
                f"{task_id} ({self.where()}) lease {tags['lease']} deadline "
                f"{_iso(float(tags['deadline']))}\n[{self.name}] console: {console}\n"
            )

    def _copy_log_tail(
        self, job: Job, task_id: str, state: TaskState | None, note: str = ""
    ) -> list[str]:
        """Append the CloudWatch tail to the local log; returns the lines (best effort)."""
        group, stream = self.log_location(task_id, state)
        lines: list[str] = []
        problem = ""
        if group and stream:
            try:
                lines = aws.log_tail(self.logs, group, stream, self.log_lines)
            except Exception as exc:
                problem = f"could not read the log: {aws.describe_error(exc)}"
        try:
            with job.log_path.open("a", encoding="utf-8") as fh:
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                if note:
                    fh.write(f"[{self.name}] {stamp} {note}\n")
                if group and stream:
                    fh.write(
                        f"[{self.name}] last {len(lines)} lines of CloudWatch {group} {stream} "
                        f"({self.log_url(task_id, state)}):\n"
                    )
                    fh.writelines(f"{line}\n" for line in lines)
                if problem:
                    fh.write(f"[{self.name}] {problem}\n")
        except OSError as exc:
            log.warning("could not write %s: %s", job.log_path, exc)
        return lines

    def _record(
        self,
        job: Job,
        task_id: str,
        state: TaskState,
        submitted: float,
        finished: float,
        lines: list[str],
        stopped_by_us: str,
        capacity: str = ON_DEMAND,
    ) -> RunRecord:
        spec = job.spec
        # What AWS bills: the provider's own run time when it reports one, else the time
        # from submission until we saw the end (an upper bound).
        if state.billed_seconds is not None:
            wall = state.billed_seconds
        elif state.started_at:
            wall = max(0.0, (state.stopped_at or finished) - state.started_at)
        else:
            wall = max(0.0, finished - submitted)
        vcpu_seconds = spec.cpu / 1024 * wall
        memory_gib_seconds = spec.memory / 1024 * wall
        exit_code = state.exit_code
        if stopped_by_us and not exit_code:
            # We stopped it at its deadline: a failure even if the container's answer to
            # SIGTERM was 0 (or none), like the wrapper's own exit 124.
            exit_code = EXIT_DEADLINE
        error = ""
        if exit_code != 0:
            reason = failure_reason(self.name, task_id, state, spec.memory, stopped_by_us)
            error = "\n".join([*lines[-ERROR_LOG_LINES:], reason])
        return RunRecord(
            executor=self.name,
            job_id=task_id,
            attempt=job.attempt,
            started_at=_iso(submitted),
            finished_at=_iso(finished),
            exit_code=exit_code,
            vcpu_seconds=round(vcpu_seconds, 3),
            memory_gib_seconds=round(memory_gib_seconds, 3),
            cost_usd=estimate_cost(self.name, vcpu_seconds, memory_gib_seconds, capacity),
            log_uri=self.log_url(task_id, state) or str(job.log_path),
            tracking_url=self.console_url(task_id),
            host=self.where(),
            error=error,
            image=state.image or self.job_image(job),
            image_digest=state.image_digest,
            capacity=capacity,
        )


def failure_reason(
    executor: str, task_id: str, state: TaskState, memory_mib: int, stopped_by_us: str = ""
) -> str:
    """One line saying why a task failed, for people: exit code, OOM, stop codes."""
    parts = [f"{executor} {_short(task_id)} {state.status}"]
    if state.exit_code is None:
        parts.append("without an exit code (the container did not run to its end)")
    else:
        parts.append(f"exit code {state.exit_code}")
    if state.exit_code == EXIT_OOM:
        parts.append(f"killed (SIGKILL): out of memory? the spec reserves {memory_mib} MiB")
    elif state.exit_code == EXIT_DEADLINE:
        parts.append("the wrapper stopped the program at its timeout")
    if stopped_by_us:
        parts.append(f"stopped by the pipeline: {stopped_by_us}")
    if state.reason:
        parts.append(state.reason)
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    """``45s``, ``2m10s``, ``1h05m`` for status messages."""
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _short(task_id: str) -> str:
    return task_id.rsplit("/", 1)[-1]


def _stop_reason(exc: BaseException) -> str:
    if isinstance(exc, WorkerGone):
        return "the luigi worker process died"
    if isinstance(exc, Interrupted):
        return f"worker interrupted ({exc})"
    if isinstance(exc, KeyboardInterrupt):
        return "worker interrupted (SIGINT)"
    return f"watching failed: {type(exc).__name__}: {exc}"[:200]
