"""No program outlives its wrapper, and no wrapper outlives its run (local executor).

SIGKILL cannot be caught, so each test kills for real and then looks for survivors with
psutil: the whole process group of a real ``pipeline run`` (what ``timeout -s KILL``, the
end of a CI job or a supervisor sends), only a wrapper, and a program that leaves
children of its own. Every test kills whatever it started and finds alive in a
``finally``, so a failure does not leak processes onto a shared machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.executors import Events, Job
from pipeline.executors.local import LocalExecutor
from tests.conftest import REPO
from tests.executors.test_local import make_job
from tests.ops.conftest import DATE, NOOP, home_env, make_home, noop_spec

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal")

# A program that starts a child of its own (joblib workers, a shell pipeline), writes
# "PROGRAM_PID CHILD_PID" and then sleeps, or exits at once ("leave"), orphaning the child.
# Both command lines name the test's tmp path, so that the cleanup finds them.
PROGRAM = """
import os, pathlib, subprocess, sys, time
mode, pids = sys.argv[1], pathlib.Path(sys.argv[2])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(pids)])
tmp = pids.with_suffix(".tmp")
tmp.write_text(f"{os.getpid()} {child.pid}")
tmp.rename(pids)
if mode == "sleep":
    time.sleep(120)
"""


def _live(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while _live(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _live(pids)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def _marked(marker: str) -> list[psutil.Process]:
    """Live processes whose command line mentions ``marker`` (a test's tmp path)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmdline = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(marker in c for c in cmdline):
            found.append(p)
    return found


def _programs(home: Path) -> list[int]:
    return [p.pid for p in _marked(str(home)) if str(NOOP) in p.info["cmdline"]]


def _wrappers(home: Path) -> list[int]:
    return [p.pid for p in _marked(str(home)) if "pipeline.wrapper" in p.info["cmdline"]]


@contextlib.contextmanager
def _no_survivors(marker: str) -> Iterator[None]:
    """On the way out, SIGKILL anything still alive that mentions ``marker``."""
    try:
        yield
    finally:
        _kill([p.pid for p in _marked(marker) if p.pid != os.getpid()])


def test_sigkill_of_the_run_group_leaves_no_program(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=3, respondents=200)
    spec = noop_spec(home / "noop.toml", seconds=60)
    with _no_survivors(str(home)):
        run = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
             "--program", str(spec), "--local-scheduler"],
            cwd=REPO, env={**os.environ, **home_env(home)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group, as under `timeout` or a CI runner
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while len(_programs(home)) < 3 and time.monotonic() < deadline:
                assert run.poll() is None, "pipeline run ended before its programs ran"
                time.sleep(0.2)
            programs, wrappers = _programs(home), _wrappers(home)
            assert len(programs) == 3 and len(wrappers) == 3, "the programs never ran at once"
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=10)
            assert _wait_gone(programs, 5) == [], "a program outlived its run"
            assert _wait_gone(wrappers, 10) == [], "a wrapper outlived its run"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=10)


def _job(tmp_path: Path, mode: str) -> Job:
    return make_job(tmp_path, mode, program=PROGRAM, args=("pids",), timeout=120,
                    grace_seconds=5, input_name="in.csv")  # fmt: skip


def _pids(tmp_path: Path, timeout: float = 30) -> list[int]:
    """[program, its child] once the program has written them."""
    path = tmp_path / "pids"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    return [int(pid) for pid in path.read_text().split()]


def test_sigkill_of_only_the_wrapper_kills_its_program(tmp_path: Path) -> None:
    # The wrapper as the local executor starts it (its own session), with nobody to clean
    # up after it: only the kernel's parent-death signal can end the program.
    job = _job(tmp_path, "sleep")
    with _no_survivors(str(tmp_path)):
        wrapper = subprocess.Popen(
            [sys.executable, "-m", "pipeline.wrapper", "--job", job.job_uri,
             "--stop-with-parent", str(os.getpid())],
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        program, _child = _pids(tmp_path)
        wrapper.kill()
        wrapper.wait(timeout=10)
        assert _wait_gone([program], 5) == [], "the program outlived its SIGKILLed wrapper"


def test_sigkill_of_a_wrapper_under_the_executor_kills_the_program_and_its_children(
    tmp_path: Path,
) -> None:
    # The worker survives its wrapper: it ends what is left of the wrapper's session, the
    # program's own children included.
    job = _job(tmp_path, "sleep")
    killed: list[int] = []

    def kill_the_wrapper() -> None:
        _pids(tmp_path)
        wrapper = next(p for p in psutil.Process().children() if "pipeline.wrapper" in p.cmdline())
        killed.append(wrapper.pid)
        wrapper.kill()

    with _no_survivors(str(tmp_path)):
        threading.Thread(target=kill_the_wrapper, daemon=True).start()
        record = LocalExecutor(grace_seconds=2).run(job, Events())
        assert killed and record.exit_code == -signal.SIGKILL
        assert _wait_gone(_pids(tmp_path), 5) == [], "the program or its child outlived it"


def test_orphaned_children_of_a_program_are_stopped_with_it(tmp_path: Path) -> None:
    # The program exits 0 and leaves a child running: the wrapper ends the program's group
    # before it exits.
    job = _job(tmp_path, "leave")
    with _no_survivors(str(tmp_path)):
        record = LocalExecutor(grace_seconds=2).run(job, Events())
        assert record.exit_code == 0
        assert _wait_gone(_pids(tmp_path), 5) == [], "the program's child outlived the run"


def test_sigkill_of_the_worker_stops_the_program_and_its_children(tmp_path: Path) -> None:
    # A worker (here a shell standing in for `pipeline run`) SIGKILLed while the wrapper
    # runs in a session of its own: the wrapper stops its program's whole group (SIGTERM,
    # SIGKILL after the grace) and still writes the manifest.
    job = _job(tmp_path, "sleep")
    with _no_survivors(str(tmp_path)):
        worker = subprocess.Popen(
            ["sh", "-c",
             f"setsid {sys.executable} -m pipeline.wrapper --job {job.job_uri} "
             f"--stop-with-parent $$ 2>{tmp_path / 'err'} & wait"],
        )  # fmt: skip
        pids = _pids(tmp_path)
        worker.kill()
        worker.wait(timeout=10)
        assert _wait_gone(pids, 5) == [], "the program or its child outlived the worker"
        deadline = time.monotonic() + 10
        while not (tmp_path / "out" / "manifest.json").exists():
            assert time.monotonic() < deadline, (tmp_path / "err").read_text()
            time.sleep(0.1)
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert manifest["exit_code"] != 0 and manifest["terminated_by"]
