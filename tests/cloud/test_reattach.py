"""Restarting a killed delivery re-attaches to its cloud tasks instead of paying again.

Real ``pipeline run`` processes against the real ``moto_server``: ECS tasks stay
RUNNING until the FakeAgent runs their container command (the wrapper) and stops them.
Within the lease TTL a restart takes over every task (no new ``RunTask``: the cluster
holds exactly one task per cohort), the reaper keeps them while the restarted run
holds their leases, and the results are collected once. After the TTL the reaper has
stopped them and the restart submits anew.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import duckdb
import pytest

from pipeline import storage
from pipeline.executors.lease import LeaseStore
from pipeline.executors.reaper import reap
from pipeline.layout import LEASE_DIR
from tests.cloud.conftest import CLUSTER, Cloud, FakeAgent, run_pipeline, write_toy_program
from tests.cloud.helpers import wait_for
from tests.cloud.test_runs import DATE, all_tasks, start_run

TTL = 4.0


@pytest.fixture
def codes(cloud: Cloud) -> list[str]:
    result = run_pipeline(cloud, "sample-data", "--out", str(cloud.home / "raw"), "--cohorts",
                          "2", "--respondents", "150", "--seed", "5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (cloud.home / "raw" / "cohorts.csv").read_bytes().decode("cp932")
    return sorted(line.split(",")[0] for line in text.splitlines()[1:] if line)


def kill_with_tasks_running(cloud: Cloud, env: dict[str, str], args: list[str], n: int) -> float:
    """Start a delivery, SIGKILL it once its ``n`` ECS tasks run; returns when it died."""
    first = start_run(cloud, env, *args)
    try:
        wait_for(lambda: len(cloud.running_tasks(run_date=DATE)) == n, timeout=60,
                 what="every cohort's task to run")  # fmt: skip
    except AssertionError:
        first.kill()
        raise AssertionError(first.communicate()[0]) from None
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    return time.monotonic()


def runs_table(cloud: Cloud) -> list[tuple]:
    with duckdb.connect(str(cloud.home / "warehouse.duckdb"), read_only=True) as con:
        sql = "SELECT cohort, status, job_id FROM pipeline_runs ORDER BY ALL"
        return con.execute(sql).fetchall()


def test_restart_within_the_ttl_reattaches_to_every_task(
    cloud: Cloud, codes: list[str], tmp_path: Path
) -> None:
    spec = write_toy_program(tmp_path)
    cfg = cloud.config_file(tmp_path / "luigi.cfg", reaper={"lease_ttl": TTL})
    env = {"LUIGI_CONFIG_PATH": str(cfg)}
    args = ["--run-date", DATE, "--workers", "2", "--executor", "ecs", "--program", str(spec)]
    finish = False
    with FakeAgent(cloud, lambda _tags: finish) as agent:
        kill_with_tasks_running(cloud, env, args, len(codes))
        orphans = {t["taskArn"] for t in cloud.running_tasks(run_date=DATE)}
        again = start_run(cloud, env, *args)
        # The restart adopts the dead run's lease (one per process) under its own id.
        leases = f"{cloud.root}/{LEASE_DIR}"

        def adopted() -> bool:
            # The restart's own lease goes whenever its last task ends: read what is left.
            docs = [LeaseStore().read(u) for u in storage.listdir(leases)]
            return any(d and d.get("adopted_by") for d in docs)

        wait_for(adopted, timeout=60, what="the restart to adopt the tasks' lease")
        time.sleep(TTL + 1)  # the dead run's own renewals are long overdue by now
        kept = reap(ecs=cloud.ecs, cluster=CLUSTER, ttl=TTL, default_root=cloud.root)
        assert kept.reaped == [] and kept.kept == len(codes)
        finish = True
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0, out
        assert agent.errors == []
    # No new RunTask: the cluster only ever had the first run's tasks, each run once.
    assert {t["taskArn"] for t in all_tasks(cloud, run_date=DATE)} == orphans
    assert sorted(t["cohort"] for t in agent.ran) == codes
    assert f"cohorts: {len(codes)} done, 0 failed" in out
    rows = runs_table(cloud)
    assert [(c, s) for c, s, _ in rows] == [(c, "succeeded") for c in codes]
    assert {job for *_, job in rows} == orphans
    assert storage.listdir(leases) == []  # adopted leases are deleted with the run's own


def test_restart_after_the_ttl_finds_them_reaped_and_submits_anew(
    cloud: Cloud, codes: list[str], tmp_path: Path
) -> None:
    spec = write_toy_program(tmp_path)
    cfg = cloud.config_file(tmp_path / "luigi.cfg", reaper={"lease_ttl": 2})
    env = {"LUIGI_CONFIG_PATH": str(cfg)}
    args = ["--run-date", DATE, "--workers", "2", "--executor", "ecs", "--program", str(spec)]
    attempts: set[str] = set()
    armed = False  # containers run only once the killed run's attempts are known
    with FakeAgent(cloud, lambda tags: armed and tags.get("attempt") not in attempts) as agent:
        died = kill_with_tasks_running(cloud, env, args, len(codes))
        running = cloud.running_tasks(run_date=DATE)
        orphans = {t["taskArn"] for t in running}
        attempts.update(
            next(tag["value"] for tag in t["tags"] if tag["key"] == "attempt") for t in running
        )
        armed = True
        time.sleep(max(0.0, 2.5 - (time.monotonic() - died)))
        reaped = reap(ecs=cloud.ecs, cluster=CLUSTER, ttl=2, default_root=cloud.root)
        assert {r.id for r in reaped.reaped if r.stopped} == orphans
        again = start_run(cloud, env, *args)
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0, out
        assert agent.errors == []
    everything = {t["taskArn"] for t in all_tasks(cloud, run_date=DATE)}
    assert len(everything) == 2 * len(codes) and orphans < everything
    rows = runs_table(cloud)
    assert sorted((c, s) for c, s, _ in rows) == sorted(
        [(c, "succeeded") for c in codes] + [(c, "abandoned") for c in codes]
    )
    assert {job for _, s, job in rows if s == "succeeded"} == everything - orphans
