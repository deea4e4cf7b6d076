"""What every executor shares: the job it is given, the record it returns, the interface.

An executor runs ``python -m pipeline.wrapper --job URI`` somewhere (a subprocess, an ECS
task, a Batch job), watches it, stops it on failure or interrupt, and returns a
``RunRecord``: one row of the ``pipeline_runs`` table. It also lists what of the
pipeline's it still runs (``Candidate``), so that a restarted orchestrator re-attaches to
what a killed one left running (``RunningTask``) and the reaper stops what nobody owns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple, Protocol

from pipeline import config
from pipeline.core.spec import SPOT_MODES, ProgramSpec
from pipeline.errors import ConfigError

# Where a submission runs (RunRecord.capacity): Spot capacity (Fargate Spot, the Spot job
# queue) or on-demand. "" only in records written before issue 24.
SPOT, ON_DEMAND = "spot", "on_demand"


@dataclass(frozen=True)
class Job:
    """One program run for one cohort, as prepared by ``RunModel``."""

    run_date: str
    cohort: str
    spec: ProgramSpec
    attempt: str
    job_uri: str  # the job document the wrapper reads (local path or s3://)
    output_uri: str  # where the program's output directory ends up
    log_path: Path  # local log file: the program's output (or its log tail) lands here


# The columns of a ``pipeline_runs`` row, in the order they always had; ``to_dict`` returns
# exactly these so the warehouse contract does not change with the fields added below.
ROW_FIELDS = (
    "executor", "job_id", "attempt", "started_at", "finished_at", "exit_code",
    "vcpu_seconds", "memory_gib_seconds", "cost_usd", "log_uri", "tracking_url", "host",
    "error",
)  # fmt: skip


@dataclass
class RunRecord:
    """One row of ``pipeline_runs``: where and how a program run went.

    Fields past ``error`` are not (yet) columns of ``pipeline_runs``; ``to_dict`` leaves
    them out and ``to_full_dict`` has them all:

    - ``image``: the container image reference that ran (the task/job definition's image,
      which the cloud executors derive from the program spec's ``image``); "" locally.
    - ``image_digest``: ``sha256:...`` of the image that actually ran, as the service
      reported it (ECS ``DescribeTasks`` ``containers[].imageDigest``); "" when unknown
      (Batch does not report it; the wrapper's ``manifest.json`` has it there).
    - ``interruption``: set only on an abandoned attempt: why the service stopped it
      (e.g. ``SpotInterruption: Your Spot Task was interrupted.``).
    - ``capacity``: ``spot`` or ``on_demand``: what this submission ran on (priced with
      ``[cost] <executor>_spot_*`` or ``<executor>_*``).
    - ``interrupted``: the attempts the executor abandoned and resubmitted before this
      one (ECS: Fargate Spot interruptions, lost EC2 hosts; ``[ecs] attempts``; under
      ``spot = "first"`` also Batch and the local executor), oldest first. Each is a
      whole ``RunRecord`` with its own ``job_id``, times, exit code, cost, capacity and
      ``interruption``; this record is the last, deciding attempt. ``rows()`` gives all
      of them as ``pipeline_runs`` rows.
    """

    executor: str
    job_id: str
    attempt: str
    started_at: str
    finished_at: str
    exit_code: int | None
    vcpu_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    cost_usd: float = 0.0
    log_uri: str = ""
    tracking_url: str = ""
    host: str = ""
    error: str = ""
    image: str = ""
    image_digest: str = ""
    interruption: str = ""
    interrupted: list[RunRecord] = field(default_factory=list)
    capacity: str = ""

    def to_dict(self) -> dict[str, Any]:
        """This attempt as one ``pipeline_runs`` row (the original columns only)."""
        return {name: getattr(self, name) for name in ROW_FIELDS}

    def to_full_dict(self) -> dict[str, Any]:
        """Every field, the abandoned attempts included (as dicts)."""
        return asdict(self)

    def rows(self) -> list[dict[str, Any]]:
        """``pipeline_runs`` rows of every attempt: the abandoned ones, then this one."""
        return [*(r.to_dict() for r in self.interrupted), self.to_dict()]

    @property
    def total_cost_usd(self) -> float:
        """What the run cost with its abandoned attempts."""
        return round(self.cost_usd + sum(r.cost_usd for r in self.interrupted), 6)


@dataclass
class Events:
    """Callbacks through which an executor reports to the luigi task (and so to luigid)."""

    status: Callable[[str], None] = lambda _msg: None
    tracking_url: Callable[[str], None] = lambda _url: None
    progress: Callable[[float], None] = lambda _pct: None


@dataclass(frozen=True)
class Candidate:
    """A pipeline-tagged task or job the service still runs or queues: what the reaper
    judges and what a restart may re-attach to."""

    executor: str  # ecs | batch
    id: str  # task ARN or job id
    tags: dict[str, str]


class RunningTask(NamedTuple):
    """What ``find_running`` found: a task's id and tags, ``("", {})`` when none (``found``
    is then False). A tuple, so ``task_id, tags = executor.find_running(...)`` works."""

    id: str
    tags: dict[str, str]

    @property
    def found(self) -> bool:
        return bool(self.id)


class Executor(Protocol):
    """What every executor offers (``local``, ``ecs``, ``batch``)."""

    name: str

    def run(self, job: Job, events: Events) -> RunRecord:
        """Run the job to its end; stop it if interrupted (the exception propagates)."""
        ...

    def running(self) -> list[Candidate]:
        """Every pipeline task or job this executor's service still runs (or queues)."""
        ...

    def find_running(self, run_date: str, cohort: str, spec: ProgramSpec) -> RunningTask:
        """This cohort's task of this spec that a killed orchestrator left running, or
        ``RunningTask("", {})``."""
        ...

    def reattach(self, job: Job, task_id: str, tags: dict[str, str], events: Events) -> RunRecord:
        """Take over ``task_id`` (found by ``find_running``) for ``job``: watch it to its
        end and return its record, as ``run`` would have."""
        ...


class Interrupted(BaseException):
    """The worker received SIGTERM/SIGINT while a program was running."""


_shutdown = threading.Event()
_shutdown_reason = ""
_stoppers: set[Callable[[], None]] = set()
_stoppers_lock = threading.Lock()


def request_shutdown(reason: str) -> None:
    """Make every executor run of this process stop its program or cloud task and raise
    ``Interrupted``. Task threads cannot receive signals: the worker's main thread calls
    this when it is interrupted. Runs waiting in a blocking call register a stopper
    (``stops_with_shutdown``) that is called at once; loops check ``shutdown_reason()``."""
    global _shutdown_reason
    with _stoppers_lock:
        _shutdown_reason = _shutdown_reason or reason
        _shutdown.set()
        stoppers = list(_stoppers)
    for stop in stoppers:
        stop()


def shutdown_reason() -> str:
    """Why this process is shutting down, or "" while it is not."""
    return _shutdown_reason if _shutdown.is_set() else ""


@contextlib.contextmanager
def stops_with_shutdown(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` if a shutdown is requested while the block runs (or already was)."""
    with _stoppers_lock:
        _stoppers.add(stop)
        requested = _shutdown.is_set()
    try:
        if requested:
            stop()
        yield
    finally:
        with _stoppers_lock:
            _stoppers.discard(stop)


_slots: dict[tuple[int, str], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def slots(name: str, limit: int) -> threading.BoundedSemaphore:
    """This process's ``limit`` slots called ``name`` (made at the first call)."""
    key = (os.getpid(), name)
    with _slots_lock:
        if key not in _slots:
            _slots[key] = threading.BoundedSemaphore(limit)
        return _slots[key]


@contextlib.contextmanager
def holding(slot: threading.BoundedSemaphore, events: Events, waiting: str) -> Iterator[None]:
    """Hold one of ``slot``; while none is free, say ``waiting`` (luigid shows it) and
    wait. A released slot goes to a waiting run at once; a shutdown ends the wait."""
    if not slot.acquire(blocking=False):
        events.status(waiting)
        while not slot.acquire(timeout=0.5):
            if shutdown_reason():
                raise Interrupted(shutdown_reason())
    try:
        yield
    finally:
        slot.release()


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into ``Interrupted`` while a job runs, so executors get to stop
    their program or cloud task in a ``finally`` instead of dying silently (luigi's worker
    sends SIGTERM to a task process that exceeds its timeout)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: nothing to install, nothing to restore
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def prices(executor: str, capacity: str = ON_DEMAND) -> tuple[float, float]:
    """(USD per vCPU-hour, per GiB-hour) of ``executor`` on ``capacity``: ``[cost]
    <executor>_vcpu_hour`` / ``_gib_hour``, or ``<executor>_spot_vcpu_hour`` /
    ``_spot_gib_hour`` for Spot (each falling back to the on-demand price when unset)."""
    vcpu_hour = config.get_float("cost", f"{executor}_vcpu_hour", 0.0)
    gib_hour = config.get_float("cost", f"{executor}_gib_hour", 0.0)
    if capacity == SPOT:
        vcpu_hour = config.get_float("cost", f"{executor}_spot_vcpu_hour", vcpu_hour)
        gib_hour = config.get_float("cost", f"{executor}_spot_gib_hour", gib_hour)
    return vcpu_hour, gib_hour


def estimate_cost(
    executor: str, vcpu_seconds: float, memory_gib_seconds: float, capacity: str = ON_DEMAND
) -> float:
    """USD from the ``[cost]`` prices of ``executor`` on ``capacity`` (``prices``)."""
    vcpu_hour, gib_hour = prices(executor, capacity)
    return round((vcpu_seconds * vcpu_hour + memory_gib_seconds * gib_hour) / 3600.0, 6)


def spot_setting(executor: str) -> str:
    """``[<executor>] spot``, or ``$PIPELINE_<EXECUTOR>_SPOT`` when set (the stack's worker
    gets it from Terraform, ``spot_first``)."""
    return os.environ.get(f"PIPELINE_{executor.upper()}_SPOT") or config.get(executor, "spot")


def spot_mode(executor: str, spec: ProgramSpec, configured: str | None = None) -> str:
    """``first`` (the first submission on Spot, any after an interruption on-demand) or
    ``never`` (today's: the configured capacity for every submission): the spec's
    ``spot``, else ``configured`` (default: ``spot_setting(executor)``), else ``never``."""
    setting = spot_setting(executor) if configured is None else configured
    mode = spec.spot or setting or "never"
    if mode not in SPOT_MODES:
        raise ConfigError(f"luigi.cfg [{executor}] spot = {mode!r}: use first or never")
    return mode


def tail_lines(path: Path, n: int = 20) -> list[str]:
    """The last ``n`` lines of a text file (empty if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-n:]
