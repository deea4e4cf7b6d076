"""The local executor, for real: the wrapper as a subprocess around a small program."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline.core.spec import spec_from_dict
from pipeline.executors import Events, Job
from pipeline.executors.base import Interrupted, interrupts_as_exceptions
from pipeline.executors.local import LocalExecutor

PROGRAM = """
import os, pathlib, sys, time
mode, out = sys.argv[1], pathlib.Path(sys.argv[2])
print("starting", sys.executable, flush=True)
if mode == "ok":
    (out / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\\na,1,0,2\\n")
elif mode == "fail":
    for i in range(40):
        print(f"trace line {i}", file=sys.stderr)
    print("ValueError: column 'n_patients' is empty", file=sys.stderr)
    sys.exit(2)
else:
    pathlib.Path(sys.argv[3]).write_text(str(os.getpid()))
    time.sleep(600)
"""


def make_job(
    tmp_path: Path,
    mode: str,
    *,
    program: str = PROGRAM,
    args: tuple[str, ...] = ("{output_dir}", "pid"),
    timeout: int = 60,
    grace_seconds: int = 1,
    input_name: str = "in.parquet",
) -> Job:
    """A job document for a small Python ``program`` run as ``program MODE ARGS`` (an arg
    that is not a placeholder names a file under ``tmp_path``)."""
    (tmp_path / "prog.py").write_text(program)
    for name in (input_name, "frame.csv"):
        (tmp_path / name).write_text("x\n")
    paths = [a if a.startswith("{") else str(tmp_path / a) for a in args]
    spec = spec_from_dict(
        {
            "name": "prog",
            "version": "1",
            "command": ["python", str(tmp_path / "prog.py"), mode, *paths],
            "outputs": {"results": "estimates.csv"},
            "timeout": timeout,
        }
    )
    job_uri = tmp_path / "job.json"
    job_uri.write_text(
        json.dumps(
            {
                "spec": spec.to_dict(),
                "run_date": "2026-11-22",
                "cohort": "c",
                "input": str(tmp_path / input_name),
                "frame": str(tmp_path / "frame.csv"),
                "output": str(tmp_path / "out"),
                "grace_seconds": grace_seconds,
            }
        )
    )
    return Job(
        run_date="2026-11-22",
        cohort="c",
        spec=spec,
        attempt="a1",
        job_uri=str(job_uri),
        output_uri=str(tmp_path / "out"),
        log_path=tmp_path / "logs" / "run.log",
    )


def test_success_records_the_run(tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    events = Events(status=lambda m: seen.setdefault("status", m),
                    tracking_url=lambda u: seen.setdefault("url", u))  # fmt: skip
    record = LocalExecutor().run(make_job(tmp_path, "ok"), events)
    assert record.exit_code == 0
    assert record.executor == "local" and record.job_id.startswith("pid:")
    assert record.vcpu_seconds > 0
    assert (tmp_path / "out" / "estimates.csv").exists()
    log = (tmp_path / "logs" / "run.log").read_text()
    assert "starting" in log and "[wrapper]" in log
    assert seen["url"] == (tmp_path / "logs" / "run.log").as_uri()
    assert "running locally" in seen["status"]


def test_failure_keeps_the_stderr_tail(tmp_path: Path) -> None:
    record = LocalExecutor().run(make_job(tmp_path, "fail"), Events())
    assert record.exit_code == 2
    assert "ValueError: column 'n_patients' is empty" in record.error
    assert "trace line 0" not in record.error  # only the tail
    assert "trace line 0" in (tmp_path / "logs" / "run.log").read_text()  # all of it is logged


def test_interrupt_stops_the_whole_tree(tmp_path: Path) -> None:
    job = make_job(tmp_path, "hang")

    def interrupt_when_started() -> None:
        pid_file = tmp_path / "pid"
        while not (pid_file.exists() and pid_file.read_text()):
            time.sleep(0.05)
        signal.raise_signal(signal.SIGTERM)  # what luigi's worker sends on timeout

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        LocalExecutor(grace_seconds=2).run(job, Events())
    assert time.monotonic() - started < 30
    pid = int((tmp_path / "pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_signals_are_restored_after_a_run() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with interrupts_as_exceptions():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_python_in_the_spec_is_this_interpreter(tmp_path: Path) -> None:
    # "python" in a spec must resolve to the environment the pipeline runs in.
    job = make_job(tmp_path, "ok")
    LocalExecutor().run(job, Events())
    started_line = next(
        line
        for line in (tmp_path / "logs" / "run.log").read_text().splitlines()
        if line.startswith("starting")
    )
    assert Path(started_line.split()[1]).parent == Path(sys.executable).parent
