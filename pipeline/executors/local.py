"""The local executor: the wrapper as a subprocess on this machine (the embedded default)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import psutil

from pipeline.executors.base import (
    Events,
    Job,
    RunRecord,
    estimate_cost,
    interrupts_as_exceptions,
)
from pipeline.wrapper import EXIT_DEADLINE

# The wrapper enforces the spec's timeout itself; this backstop only catches a wrapper
# that is itself stuck.
BACKSTOP_SECONDS = 60.0


class LocalExecutor:
    """Runs ``python -m pipeline.wrapper --job ...`` and waits for it.

    The program's stdout and stderr go to the job's log file; the last stderr lines are
    kept for the error message. On interrupt the whole process tree is stopped.
    """

    name = "local"

    def __init__(self, *, grace_seconds: float = 10.0) -> None:
        self.grace_seconds = grace_seconds

    def run(self, job: Job, events: Events) -> RunRecord:
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The spec's "python" must be this environment's interpreter, as in the image.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = [
            sys.executable, "-m", "pipeline.wrapper", "--job", job.job_uri, "--stop-with-parent",
        ]  # fmt: skip
        started = datetime.now(UTC)
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stderr_tail: deque[str] = deque(maxlen=30)
        with job.log_path.open("ab") as log, interrupts_as_exceptions():
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.PIPE, env=env, start_new_session=True
            )
            copier = threading.Thread(
                target=_copy_stderr, args=(proc, log, stderr_tail), daemon=True
            )
            copier.start()
            events.tracking_url(job.log_path.as_uri())
            events.status(f"{job.spec.name} {job.spec.version} running locally (pid {proc.pid})")
            try:
                exit_code = proc.wait(timeout=job.spec.timeout_seconds + BACKSTOP_SECONDS)
            except subprocess.TimeoutExpired:
                _stop_tree(proc, self.grace_seconds)
                exit_code = EXIT_DEADLINE
            except BaseException:
                _stop_tree(proc, self.grace_seconds)
                raise
            finally:
                copier.join(timeout=5)
        finished = datetime.now(UTC)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = (usage.ru_utime - usage_before.ru_utime) + (
            usage.ru_stime - usage_before.ru_stime
        )
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
            cost_usd=estimate_cost(self.name, cpu_seconds, memory_gib_seconds),
            log_uri=str(job.log_path),
            tracking_url=job.log_path.as_uri(),
            host=socket.gethostname(),
            error=error,
        )


def _copy_stderr(proc: subprocess.Popen[bytes], log, tail: deque[str]) -> None:
    assert proc.stderr is not None
    for line in iter(proc.stderr.readline, b""):
        log.write(line)
        log.flush()
        tail.append(line.decode("utf-8", errors="replace").rstrip())


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
