"""A run through luigid survives losing luigid: SIGKILLed mid-run and started again with
a state file from before the run (so it knows nothing of the run), luigid gets the run's
remaining tasks registered again by the worker, which finishes the run: exit 0, every
cohort done and in the warehouse, and no program started twice. The same in process, with
a failed task and a status message on the way; and two overlapping `pipeline run`s of a
date through luigid run each program once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import luigi
import luigi.rpc
import luigi.scheduler
import pytest

from pipeline.worker import PipelineWorker, _Serialized
from tests.conftest import REPO
from tests.ops.conftest import (
    DATE,
    Luigid,
    cohort_codes,
    home_env,
    make_home,
    noop_spec,
    pipeline,
    wait_for,
)


def test_run_finishes_after_luigid_is_sigkilled_and_restarted_with_old_state(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path / "home")
    codes = cohort_codes(home)
    assert len(codes) == 3
    spec = noop_spec(tmp_path / "noop.toml", seconds=15)
    server = Luigid(tmp_path / "luigid-home", env={"DD_AGENT_HOST": ""})
    server.start().stop()  # a clean shutdown before the run: the state file it restarts from
    assert server.state_path.is_file()
    saved = server.state_path.stat().st_mtime_ns
    server.start()
    work = home / "work" / DATE
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
         "--scheduler-url", server.url, "--workers", "3", "--program", str(spec)],
        cwd=REPO, env={**os.environ, **home_env(home)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # Every cohort's program started (its attempt's job document is written first).
        assert wait_for(
            lambda: len(list(work.glob("model/*/*/attempts/*/job.json"))) == len(codes),
            timeout=60,
        ), "the programs did not start"
        time.sleep(1)
        server.kill()
        time.sleep(7)  # the worker meets connection errors meanwhile
        server.start()  # same port, same state path: the state saved before the run
        assert server.state_path.stat().st_mtime_ns == saved
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.communicate(timeout=60)
        server.stop()

    assert run.returncode == 0, out[-4000:]
    assert f"cohorts: {len(codes)} done, 0 failed" in out, out[-4000:]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        estimated = con.execute("SELECT DISTINCT cohort FROM model_estimates").fetchall()
        runs = con.execute(
            "SELECT cohort, status, count(*) FROM pipeline_runs GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    assert {c for (c,) in estimated} == set(codes)
    assert runs == [(code, "succeeded", 1) for code in sorted(codes)]
    # Each program started exactly once: one attempt and one program log per cohort.
    for code in codes:
        assert len(list(work.glob(f"model/{code}/*/attempts/*"))) == 1, code
        assert len(list(work.glob(f"logs/programs/{code}/*.log"))) == 1, code


# -- the same in process: an in-memory scheduler that goes away and comes back empty -------

RUNS: dict[str, int] = {}


class _Flaky:
    """A scheduler (luigi's in-process one) that can be down (every call raises RPCError,
    as luigi's RemoteScheduler does once its retries are spent) and come back empty."""

    def __init__(self) -> None:
        self.scheduler = luigi.scheduler.Scheduler()
        self.down = False

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            if self.down:
                raise luigi.rpc.RPCError(f"{name}: luigid is down")
            return getattr(self.scheduler, name)(*args, **kwargs)

        return call

    def status(self, task: luigi.Task) -> str | None:
        found = self.scheduler.task_search(task_str=task.task_id)
        return next((s for s, tasks in found.items() if task.task_id in tasks), None)


class _Counted(luigi.Task):
    dir = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"{self.dir}/{self.task_family}.done")

    def counted(self) -> None:
        RUNS[self.task_family] = RUNS.get(self.task_family, 0) + 1


class LostFails(_Counted):
    def run(self) -> None:
        self.counted()
        raise RuntimeError("this program failed")


class LostSlow(_Counted):
    """Runs while the scheduler goes away and comes back empty."""

    flaky: _Flaky | None = None
    outage = True
    stale = False

    def run(self) -> None:
        self.counted()
        flaky = LostSlow.flaky
        assert flaky is not None
        failed = LostFails(dir=self.dir)
        deadline = time.monotonic() + 20
        while flaky.status(failed) != "FAILED" and time.monotonic() < deadline:
            time.sleep(0.05)
        self.set_status_message("estimating")
        if LostSlow.outage:  # longer than luigi's retries: calls fail meanwhile
            flaky.down = True
            self.set_status_message("still estimating")  # dropped, not a failure
            time.sleep(0.5)
        else:  # within luigi's retries: the worker sees luigid back, knowing nothing
            self.set_status_message("still estimating")
        back = luigi.scheduler.Scheduler()  # back, knowing nothing of this worker
        if LostSlow.stale:  # a state file from an earlier run of the same graph
            root = LostRoot(dir=self.dir)
            back.add_task(worker="an-earlier-worker", task_id=root.task_id, status="PENDING",
                          family=root.task_family, params=root.to_str_params())  # fmt: skip
        flaky.scheduler = back
        flaky.down = False
        time.sleep(0.5)  # the worker registers the run again meanwhile
        Path(self.output().path).write_text("done")


class LostAfterSlow(_Counted):
    def requires(self) -> LostSlow:
        return LostSlow(dir=self.dir)

    def run(self) -> None:
        self.counted()
        Path(self.output().path).write_text("done")


class LostAfterFails(LostAfterSlow):
    def requires(self) -> LostFails:
        return LostFails(dir=self.dir)


class LostRoot(luigi.WrapperTask):
    dir = luigi.Parameter()

    def requires(self) -> list[luigi.Task]:
        return [LostAfterSlow(dir=self.dir), LostAfterFails(dir=self.dir)]


@pytest.mark.parametrize(
    ("outage", "stale"),
    [(True, False), (False, False), (False, True)],
    ids=["calls-failed-meanwhile", "back-empty", "back-with-an-earlier-state"],
)
def test_worker_registers_a_lost_run_again_without_rerunning_anything(
    tmp_path: Path, outage: bool, stale: bool
) -> None:
    RUNS.clear()
    flaky = LostSlow.flaky = _Flaky()
    LostSlow.outage, LostSlow.stale = outage, stale
    root = LostRoot(dir=str(tmp_path))
    with PipelineWorker(scheduler=_Serialized(flaky), worker_processes=2) as worker:
        assert worker.add(root)
        assert worker.run() is False  # LostFails failed
    assert worker.registrations == 1
    # Nothing ran twice; the failed task was not retried; the rest of the run went on.
    assert RUNS == {"LostFails": 1, "LostSlow": 1, "LostAfterSlow": 1}
    # The new scheduler knows where each task stands, and the running task's last message.
    assert flaky.status(LostFails(dir=str(tmp_path))) == "FAILED"
    assert flaky.status(LostSlow(dir=str(tmp_path))) == "DONE"
    assert flaky.status(LostAfterSlow(dir=str(tmp_path))) == "DONE"
    assert flaky.status(LostAfterFails(dir=str(tmp_path))) == "PENDING"
    slow = LostSlow(dir=str(tmp_path)).task_id
    assert flaky.scheduler.get_task_status_message(slow)["statusMessage"] == "still estimating"


# -- two overlapping `pipeline run`s of one date through luigid ----------------------------


def test_overlapping_pipeline_runs_through_luigid_run_each_program_once(
    luigid: Luigid, tmp_path: Path
) -> None:
    home = make_home(tmp_path / "home", cohorts=3, respondents=120)
    codes = cohort_codes(home)
    spec = noop_spec(tmp_path / "noop.toml", seconds=3)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
             "--scheduler-url", luigid.url, "--workers", "3", "--program", str(spec)],
            cwd=REPO, env={**os.environ, **home_env(home)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    # 0 once the date is complete; 10 or 25 for one that ended while the other held tasks.
    for run, out in zip(runs, outputs, strict=True):
        assert run.returncode in (0, 10, 25), (run.returncode, out[-3000:])
    work = home / "work" / DATE
    for code in codes:
        assert len(list(work.glob(f"model/{code}/*/attempts/*"))) == 1, (code, outputs)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT cohort, status, count(*) FROM pipeline_runs GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    assert rows == [(code, "succeeded", 1) for code in sorted(codes)]
    again = pipeline(home, "run", "--run-date", DATE, "--program", str(spec),
                     "--scheduler-url", luigid.url)  # fmt: skip
    assert again.returncode == 0 and f"cohorts: {len(codes)} done, 0 failed" in again.stdout


@pytest.mark.parametrize(
    ("disconnect_delay", "pause"),
    [(10, 0), (2, 4)],
    ids=["still-running-in-luigid", "failed-by-luigid-meanwhile"],
)
def test_a_run_started_right_after_a_killed_one_runs_what_the_killed_one_left(
    tmp_path: Path, disconnect_delay: int, pause: float
) -> None:
    """luigid lists a SIGKILLed run's tasks as RUNNING until it prunes that worker, then
    FAILED. The same command run again before that waits for it; run just as luigid
    prunes, it registers what luigid failed again; either way it runs what is left
    (before: it exited at once with those cohorts "not run"). luigid's delay
    ([scheduler] worker_disconnect_delay) is 60 s by default, seconds here."""
    config = tmp_path / "luigid.cfg"
    settings = f"worker_disconnect_delay = {disconnect_delay}\nprune_on_get_work = true\n"
    config.write_text(
        (REPO / "docker" / "luigid.local.cfg")
        .read_text()
        .replace("[scheduler]\n", "[scheduler]\n" + settings)
    )
    home = make_home(tmp_path / "home")
    codes = cohort_codes(home)
    spec = noop_spec(tmp_path / "noop.toml", seconds=30)
    server = Luigid(tmp_path / "luigid-home", env={"LUIGI_CONFIG_PATH": str(config)}).start()
    args = [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
            "--scheduler-url", server.url, "--workers", "3", "--program", str(spec)]  # fmt: skip
    work = home / "work" / DATE
    first = subprocess.Popen(args, cwd=REPO, env={**os.environ, **home_env(home)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    try:
        assert wait_for(
            lambda: len(list(work.glob("model/*/*/attempts/*/job.json"))) == len(codes),
            timeout=90,
        )
        os.killpg(first.pid, signal.SIGKILL)  # the run and its programs
        first.wait(timeout=30)
        time.sleep(pause)
        again = pipeline(home, "run", "--run-date", DATE, "--scheduler-url", server.url,
                         "--workers", "3", "--program", str(spec), timeout=240)  # fmt: skip
    finally:
        server.stop()
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"cohorts: {len(codes)} done, 0 failed" in again.stdout
    assert "not run" not in again.stdout
