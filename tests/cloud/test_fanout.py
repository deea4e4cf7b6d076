"""Every cohort at once: `pipeline run --executor ecs` exactly as the cron schedule runs it
(no --workers) keeps all cohorts' ECS tasks RUNNING together from one process, and every
protection against orphans holds at that width."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline import storage
from tests.cloud.conftest import Cloud, FakeAgent, container_env, run_pipeline, write_toy_program
from tests.cloud.helpers import wait_for
from tests.cloud.test_runs import all_tasks
from tests.conftest import REPO

DATE = "2026-11-24"
COHORTS = 12


@pytest.fixture
def raw(cloud: Cloud) -> Path:
    result = run_pipeline(cloud, "sample-data", "--out", str(cloud.home / "raw"), "--cohorts",
                          str(COHORTS), "--respondents", "60", "--seed", "9")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return cloud.home / "raw"


def cron_run(cloud: Cloud, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    """The scheduled command as Terraform writes it (no --workers), in its own session."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--executor", "ecs",
         "--local-scheduler", *extra],
        cwd=REPO, env={**container_env(cloud), **env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    found = [root]
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.status()  # gone already: not part of the tree
            found.append(child)
    return found


def test_every_cohort_runs_at_once_and_a_kill_leaves_nothing_after_reap(
    cloud: Cloud, raw: Path, tmp_path: Path
) -> None:
    spec = write_toy_program(tmp_path)
    env = {"LUIGI_CONFIG_PATH": str(cloud.config_file(tmp_path / "luigi.cfg"))}
    run = cron_run(cloud, env, "--program", str(spec))
    try:
        wait_for(lambda: len(cloud.running_tasks(run_date=DATE)) == COHORTS, timeout=90,
                 what=f"all {COHORTS} cohorts' tasks RUNNING at once")  # fmt: skip
        # One orchestrator process waits for all of them, in threads: its process tree
        # is the one process (tasks are its threads), whatever the number of cohorts.
        live = [p for p in tree(run.pid) if p.status() != psutil.STATUS_ZOMBIE]
        assert len(live) <= 1 + 4 < COHORTS, [p.pid for p in live]
    except AssertionError:
        run.kill()
        raise AssertionError(run.communicate()[0]) from None
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert len(cloud.running_tasks(run_date=DATE)) == COHORTS  # the dead worker's orphans
    time.sleep(3.5)  # [reaper] lease_ttl = 3 in the test config
    reap_env = {"LUIGI_CONFIG_PATH": str(
        cloud.config_file(tmp_path / "reap.cfg", reaper={"executors": "ecs"}))}  # fmt: skip
    reaped = run_pipeline(cloud, "reap", env=reap_env)
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert cloud.running_tasks(run_date=DATE) == []


def test_sigterm_stops_every_running_task(cloud: Cloud, raw: Path, tmp_path: Path) -> None:
    spec = write_toy_program(tmp_path)
    env = {"LUIGI_CONFIG_PATH": str(cloud.config_file(tmp_path / "luigi.cfg"))}
    run = cron_run(cloud, env, "--program", str(spec))
    try:
        wait_for(lambda: len(cloud.running_tasks(run_date=DATE)) == COHORTS, timeout=90,
                 what="all tasks RUNNING")  # fmt: skip
        run.send_signal(signal.SIGTERM)  # what ECS sends the orchestrator's container
        out, _ = run.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode != 0, out
    assert cloud.running_tasks(run_date=DATE) == []
    reasons = {t["stoppedReason"] for t in all_tasks(cloud, run_date=DATE)}
    assert reasons == {"survey-pipeline: worker interrupted (the worker was interrupted)"}, out


def test_max_running_bounds_the_tasks_at_once(cloud: Cloud, raw: Path, tmp_path: Path) -> None:
    spec = write_toy_program(tmp_path)
    config = cloud.config_file(tmp_path / "luigi.cfg", ecs={"max_running": 5})
    run = cron_run(cloud, {"LUIGI_CONFIG_PATH": str(config)}, "--program", str(spec))
    try:
        wait_for(lambda: len(cloud.running_tasks(run_date=DATE)) == 5, timeout=90,
                 what="five tasks RUNNING")  # fmt: skip
        time.sleep(2)  # several polls later, still no more than the limit
        assert len(cloud.running_tasks(run_date=DATE)) == 5
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)


def test_a_failing_cohort_fails_alone_with_its_log_tail(
    cloud: Cloud, raw: Path, tmp_path: Path
) -> None:
    spec = write_toy_program(tmp_path, mode="fail-for:")
    env = {"LUIGI_CONFIG_PATH": str(cloud.config_file(tmp_path / "luigi.cfg"))}
    cohorts = [
        line.split(",")[0]
        for line in (raw / "cohorts.csv")
        .read_bytes()
        .decode("utf-8-sig", "replace")
        .splitlines()[1:4]
    ]
    failing = cohorts[0]
    spec.write_text(spec.read_text().replace('"fail-for:"', f'"fail-for:{failing}"'))
    args = [arg for code in cohorts for arg in ("--cohort", code)]
    with FakeAgent(cloud, lambda tags: tags["run_date"] == DATE) as agent:
        run = cron_run(cloud, env, "--program", str(spec), *args)
        out, _ = run.communicate(timeout=120)
    assert agent.errors == []
    assert run.returncode == 30, out  # [retcode] task_failed
    assert f"cohorts: {len(cohorts) - 1} done, 1 failed" in out, out
    line = next(line for line in out.splitlines() if line.strip().startswith(failing))
    # moto reports exit code 0 for every stopped task; the wrapper's manifest says 3.
    assert "FAILED at model" in line and "exited with 3 on ecs" in line, line
    # The error carries the program's last lines, and the program log is in storage.
    failures = storage.listdir(f"{cloud.root}/{DATE}/logs/failures")
    text = "".join(storage.read_bytes(uri).decode() for uri in failures)
    assert "column 'n_patients' is empty" in text
    logs = storage.listdir(f"{cloud.root}/{DATE}/logs/programs/{failing}")
    assert logs and "[wrapper]" in storage.read_bytes(logs[0]).decode()
