"""The local executor: the wrapper as a subprocess on this machine (the embedded default)."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import psutil

from pipeline import config, storage
from pipeline.core.job import CAPACITY_ENV, MANIFEST_FILE
from pipeline.core.spec import ProgramSpec
from pipeline.errors import ConfigError, PipelineError
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
from pipeline.wrapper import EXIT_DEADLINE, IMDS_ENV, exit_notifier

DEFAULT_MODEL_SLOTS = 4
# The wrapper enforces the spec's timeout itself; this backstop only catches a wrapper
# that is itself stuck.
BACKSTOP_SECONDS = 60.0


def model_slots() -> int:
    """How many programs of this process run at once (``[resources] model_slots``)."""
    limit = int(config.get_float("resources", "model_slots", DEFAULT_MODEL_SLOTS))
    if limit < 1:
        raise ConfigError(f"[resources] model_slots must be at least 1, not {limit}")
    return limit


class LocalExecutor:
    """Runs ``python -m pipeline.wrapper --job ...`` and waits for it, holding one of the
    process's ``[resources] model_slots`` while it runs: a run waiting for a slot has its
    job prepared, and starts the moment another program ends.

    The program's stdout and stderr go to the job's log file; the last stderr lines are
    kept for the error message. On interrupt the whole process tree is stopped.

    Lifetimes (docs/executors.md, "The local executor"): the wrapper leads a session of
    its own, so a signal to the worker's process group does not reach it; SIGTERM/SIGINT
    of the worker stops it through ``request_shutdown`` (the wrapper stops its program,
    then exits), and a worker killed with SIGKILL is noticed by the wrapper itself within
    a second (``--stop-with-parent``), which then does the same. The program runs in its
    own process group inside the wrapper's session and dies with its wrapper
    (``pipeline.wrapper.ProgramRunner``); when a wrapper dies of a signal, this process
    SIGKILLs whatever is left in the wrapper's session: the program's own children.
    """

    name = "local"

    def __init__(self, *, grace_seconds: float = 10.0) -> None:
        self.grace_seconds = grace_seconds

    def run(self, job: Job, events: Events) -> RunRecord:
        """Run the job; under ``spot = "first"`` the first submission plays Spot (this
        machine has none: the label and the spot-interruption fault point are what
        differ), and one that was interrupted (its manifest says so) is run again, with
        the same job document, as on-demand — the protocol of the cloud executors, so it
        can be tried on a laptop (docs/executors.md, "Spot first")."""
        first = spot_mode(self.name, job.spec) == "first"
        record = self._submit(job, events, SPOT if first else ON_DEMAND)
        interruption = _interruption(job) if first and record.exit_code != 0 else ""
        if not interruption:
            return record
        record.interruption = interruption
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with job.log_path.open("a", encoding="utf-8") as fh:
            fh.write(f"[local] {stamp} {record.job_id} interrupted: {interruption}; running "
                     "the same job again on on-demand capacity\n")  # fmt: skip
        events.status(
            f"{job.spec.name} {job.spec.version} interrupted on Spot ({interruption}); "
            "running again on on-demand capacity"
        )
        _clear_output(job)
        final = self._submit(job, events, ON_DEMAND)
        final.interrupted = [record]
        return final

    def _submit(self, job: Job, events: Events, capacity: str) -> RunRecord:
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[CAPACITY_ENV] = capacity
        env.setdefault(IMDS_ENV, "")  # no instance metadata on this machine
        # The spec's "python" must be this environment's interpreter, as in the image.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = [
            sys.executable, "-m", "pipeline.wrapper", "--job", job.job_uri,
            "--stop-with-parent", str(os.getpid()),
        ]  # fmt: skip
        stderr_tail: deque[str] = deque(maxlen=30)
        limit = model_slots()
        waiting = f"waiting for a model slot ([resources] model_slots = {limit} programs run)"
        with (
            interrupts_as_exceptions(),
            holding(slots("model_slots", limit), events, waiting),
            job.log_path.open("ab") as log,
        ):
            started = datetime.now(UTC)
            # A session of its own: SIGKILL of the worker's process group (`timeout -s
            # KILL`, a CI job's end) must leave the wrapper alive to stop its program.
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.PIPE, env=env, start_new_session=True
            )
            copier = threading.Thread(
                target=_copy_stderr, args=(proc, log, stderr_tail), daemon=True
            )
            copier.start()
            events.tracking_url(job.log_path.as_uri())
            events.status(f"{job.spec.name} {job.spec.version} running locally (pid {proc.pid})")
            # The wait returns the moment the wrapper exits (Popen.wait with a timeout
            # polls, up to 50 ms late: time a free model slot would stand idle). A
            # shutdown of the worker (a thread gets no signal) SIGTERMs the wrapper, which
            # stops its program; the backstop stops a wrapper that is itself stuck.
            stuck = threading.Event()
            backstop = threading.Timer(
                job.spec.timeout_seconds + BACKSTOP_SECONDS,
                lambda: (stuck.set(), _stop_tree(proc, self.grace_seconds)),
            )
            backstop.daemon = True
            backstop.start()
            try:
                with stops_with_shutdown(lambda: _terminate(proc)):
                    exit_code, usage = _wait(proc)
            except BaseException:
                _stop_tree(proc, self.grace_seconds)
                raise
            finally:
                backstop.cancel()
                copier.join(timeout=5)
            if stuck.is_set():
                _stop_tree(proc, self.grace_seconds)
                exit_code = EXIT_DEADLINE
            if shutdown_reason():
                _stop_tree(proc, self.grace_seconds)
                raise Interrupted(shutdown_reason())
            if exit_code < 0:  # the wrapper was killed: its program's children may be left
                _end_session(proc.pid)
        finished = datetime.now(UTC)
        cpu_seconds = usage.ru_utime + usage.ru_stime
        wall = (finished - started).total_seconds()
        # ru_maxrss is KiB on Linux: peak RSS held for the whole run, an upper bound.
        memory_gib_seconds = usage.ru_maxrss / (1024 * 1024) * wall
        error = ""
        if exit_code != 0:
            error = "\n".join(stderr_tail)
        return RunRecord(
            executor=self.name,
            job_id=f"pid:{proc.pid}",
            attempt=job.attempt,
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            exit_code=exit_code,
            vcpu_seconds=round(cpu_seconds, 3),
            memory_gib_seconds=round(memory_gib_seconds, 3),
            cost_usd=estimate_cost(self.name, cpu_seconds, memory_gib_seconds, capacity),
            log_uri=str(job.log_path),
            tracking_url=job.log_path.as_uri(),
            host=socket.gethostname(),
            error=error,
            capacity=capacity,
        )

    # -- what a restart could take over: nothing, locally --------------------------------
    def running(self) -> list[Candidate]:
        """Always empty: a local program never outlives the worker that started it (its
        wrapper stops it when the worker dies, ``--stop-with-parent``), so there is nothing
        of a killed run's to re-attach to, nor for the reaper to stop."""
        return []

    def find_running(self, run_date: str, cohort: str, spec: ProgramSpec) -> RunningTask:
        """Always ``RunningTask("", {})`` (see ``running``): a restart adopts a finished
        attempt (``attempts.find_finished``) or runs the program again."""
        return RunningTask("", {})

    def reattach(self, job: Job, task_id: str, tags: dict[str, str], events: Events) -> RunRecord:
        """Never called (``find_running`` finds nothing): raises ``PipelineError``."""
        raise PipelineError(
            f"the local executor cannot re-attach to {task_id!r} for cohort {job.cohort}: a "
            "local program does not outlive the worker that started it"
        )


def _interruption(job: Job) -> str:
    """The interruption the wrapper's manifest records for this attempt ("" if none)."""
    uri = storage.join(job.output_uri, MANIFEST_FILE)
    try:
        manifest = storage.read_json(uri) if storage.exists(uri) else {}
    except (OSError, ValueError):
        return ""
    if not isinstance(manifest, dict) or manifest.get("attempt") != job.attempt:
        return ""
    return str(manifest.get("interruption") or "")


def _clear_output(job: Job) -> None:
    """Remove what the interrupted submission left in a local output directory (partial
    outputs, its manifest); the checkpoint lives in its own store."""
    if not storage.is_s3(job.output_uri):
        shutil.rmtree(job.output_uri, ignore_errors=True)


def _copy_stderr(proc: subprocess.Popen[bytes], log, tail: deque[str]) -> None:
    assert proc.stderr is not None
    for line in iter(proc.stderr.readline, b""):
        log.write(line)
        log.flush()
        tail.append(line.decode("utf-8", errors="replace").rstrip())


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """Wait until the wrapper exits: its exit code (negative: killed by that signal) and
    the resources it and the program used (RUSAGE_CHILDREN would count every program this
    process ran meanwhile: the worker runs many cohorts at once). A pidfd wakes this the
    moment it exits; the wait still wakes every second so that a signal handler of the
    main thread (``interrupts_as_exceptions``) gets to run."""
    exited = exit_notifier(proc)
    try:
        while True:
            if exited is not None:
                select.select([exited], [], [], 1.0)
            else:
                time.sleep(0.05)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage
    finally:
        if exited is not None:
            os.close(exited)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the wrapper (it stops its program, then exits) without waiting."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)


def _stop_tree(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the wrapper (it forwards to the program), then SIGKILL whatever is left."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    proc.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(tree, timeout=grace)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    proc.wait()
    _end_session(proc.pid)


def _end_session(sid: int) -> None:
    """SIGKILL every process still in session ``sid``, the session a killed wrapper led:
    its program's group is in it, so this ends the children the program started (the
    program itself dies of its parent-death signal; its children now belong to init). A
    process that started a session of its own is not found. ``sid`` cannot name another
    session meanwhile: the kernel does not reuse a number while a session of that id has
    members. Linux only, like the parent-death signal (the session of another process is
    not readable everywhere); on macOS a killed wrapper's program runs on, as before."""
    if sys.platform != "linux":
        return
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
