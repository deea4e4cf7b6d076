"""Whole runs with the storage root on (moto) S3: the local executor end to end, and the
ECS executor through a kill -9, the reaper and a re-run (the issue's "must hold")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline import storage
from pipeline.core.spec import load_spec
from pipeline.executors.reaper import reap
from tests.cloud.conftest import (
    CLUSTER,
    Cloud,
    FakeAgent,
    container_env,
    run_pipeline,
    tags_of,
    write_toy_program,
)
from tests.cloud.helpers import wait_for
from tests.conftest import REPO

DATE = "2026-11-22"


@pytest.fixture
def codes(cloud: Cloud) -> list[str]:
    result = run_pipeline(cloud, "sample-data", "--out", str(cloud.home / "raw"), "--cohorts",
                          "3", "--respondents", "300", "--seed", "5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = (cloud.home / "raw" / "cohorts.csv").read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp932")
    return sorted(line.split(",")[0] for line in text.splitlines()[1:] if line)


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_delivery_with_s3_storage_and_the_local_executor(
    cloud: Cloud, codes: list[str], tmp_path: Path
) -> None:
    spec = write_toy_program(tmp_path)
    slug = load_spec(spec).slug
    result = run_pipeline(
        cloud, "run", "--run-date", DATE, "--local-scheduler", "--workers", "2",
        "--program", str(spec), "--cohort", codes[0], "--cohort", codes[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cohorts: 2 done, 0 failed" in result.stdout
    day = f"{cloud.root}/{DATE}"
    assert f"work: {day}" in result.stdout
    for code in codes[:2]:
        assert storage.exists(f"{day}/model/{code}/{slug}/results.parquet")
        files = storage.listdir(f"{day}/model/{code}/{slug}/attempts")
        assert any(f.endswith("/out/manifest.json") for f in files)
        assert any(f.endswith("/job.json") for f in files)
    assert storage.exists(f"{day}/cleanse/summary.json")
    assert not (cloud.home / "work").exists()  # nothing went to the local default root
    loaded = query(cloud.home / "warehouse.duckdb",
                   "SELECT DISTINCT cohort FROM model_estimates ORDER BY 1")  # fmt: skip
    assert [c for (c,) in loaded] == codes[:2]


def test_logs_and_failures_in_s3_are_read_from_another_home(
    cloud: Cloud, codes: list[str], tmp_path: Path
) -> None:
    spec = write_toy_program(tmp_path, mode=f"fail-for:{codes[0]}")
    result = run_pipeline(
        cloud, "run", "--run-date", DATE, "--local-scheduler", "--workers", "2",
        "--program", str(spec), "--cohort", codes[0], "--cohort", codes[1],
    )  # fmt: skip
    assert result.returncode == 30, result.stdout + result.stderr
    elsewhere = tmp_path / "laptop"  # another machine: same storage root, nothing local
    elsewhere.mkdir()
    # The warehouse is configured, not derived from PIPELINE_HOME, as in production.
    warehouse = f"duckdb://{cloud.home / 'warehouse.duckdb'}"
    shown = run_pipeline(cloud, "status", "--run-date", DATE, "--program", str(spec), "--json",
                         "--warehouse", warehouse,
                         env={"PIPELINE_HOME": str(elsewhere)})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    status = {row["cohort"]: row for row in json.loads(shown.stdout)["cohorts"]}
    failed, done = status[codes[0]], status[codes[1]]
    assert failed["state"] == "failed"
    records = storage.listdir(f"{cloud.root}/{DATE}/logs/failures")
    assert failed["steps"]["model"]["error"].startswith("ProgramFailed")
    assert "column 'n_patients' is empty" in "".join(
        storage.read_bytes(uri).decode() for uri in records
    )
    assert done["state"] == "done"
    for step in ("model", "validate", "ingest"):
        assert done["steps"][step]["seconds"] is not None
    log = done["steps"]["validate"]["log"]
    assert log.startswith("https://s3.console.aws.amazon.com/s3/object/pipeline-test?prefix=work")
    assert list(elsewhere.iterdir()) == []  # status wrote nothing locally


def test_status_of_a_delivery_lists_the_date_once_and_reads_each_record_once(
    cloud: Cloud, codes: list[str], tmp_path: Path
) -> None:
    """``pipeline status`` (and the summary ``pipeline run`` ends with, and the report) on
    an S3 root: what exists under the date comes from one listing of it, not a HEAD request
    per target and a LIST per cohort's attempts, and each record is read once: at 200
    cohorts it made 3,600 requests one after another."""
    import datetime as dt

    from pipeline.status import collect
    from tests.cloud.test_storage_s3 import requests_made

    spec = write_toy_program(tmp_path, mode=f"fail-for:{codes[0]}")
    result = run_pipeline(cloud, "run", "--run-date", DATE, "--local-scheduler",
                          "--workers", "2", "--program", str(spec))  # fmt: skip
    assert result.returncode == 30, result.stdout + result.stderr
    made = requests_made(storage.s3_client())
    status = collect(dt.date.fromisoformat(DATE), programs=[str(spec)], publication=False)
    states = {row.cohort: row.state for row in status.cohorts}
    assert states == {codes[0]: "failed", **dict.fromkeys(codes[1:], "done")}
    failed = next(r for r in status.cohorts if r.cohort == codes[0]).steps["model"]
    assert failed.error.startswith("ProgramFailed") and failed.log
    assert all(r.compute.vcpu_seconds > 0 for r in status.cohorts)
    assert "HeadObject" not in made
    assert made.count("ListObjectsV2") == 1  # the date's objects, fewer than 1,000
    # per cohort: its four steps' timing records, the model's run.json, the attempt's
    # run.json and manifest, the ingest's marker (the failed one: its failure record)
    assert made.count("GetObject") <= 8 * len(codes) + 3, made
    # pipeline report then reads each row's results and checks where they exist
    from pipeline import report

    made.clear()
    loaded = report.load(status)
    assert [d.results is not None for d in loaded] == [r.state == "done" for r in status.cohorts]
    assert made.count("ListObjectsV2") == 1 and "HeadObject" not in made
    assert made.count("GetObject") == sum(
        (d.results is not None) + (d.checks is not None) for d in loaded
    )


def luigi_errors(out: str) -> str:
    """The ERROR lines of the luigi log a run's summary names (for failure messages)."""
    import re

    match = re.search(r"luigi's log of this run: (\S+)", out)
    if not match:
        return ""
    text = storage.read_bytes(match[1]).decode(errors="replace")
    wanted = (" ERROR ", "Error", "Unfulfilled")
    return "\n".join(line for line in text.splitlines() if any(w in line for w in wanted))


def start_run(cloud: Cloud, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``pipeline run`` in its own session (so the test can kill its whole process tree)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--local-scheduler", *args],
        cwd=REPO, env={**container_env(cloud), **env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def all_tasks(cloud: Cloud, **tag_filter: str) -> list[dict]:
    arns = []
    for status in ("RUNNING", "STOPPED"):
        arns += cloud.ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    tasks = []
    for start in range(0, len(arns), 100):
        tasks += cloud.ecs.describe_tasks(cluster=CLUSTER, tasks=arns[start : start + 100],
                                          include=["TAGS"])["tasks"]  # fmt: skip
    return [t for t in tasks if all(tags_of(t).get(k) == v for k, v in tag_filter.items())]


def test_killed_run_is_reaped_live_run_untouched_rerun_completes(
    cloud: Cloud, codes: list[str], tmp_path: Path
) -> None:
    killed_date, live_date = DATE, "2026-11-23"
    first, *rest = codes
    spec = write_toy_program(tmp_path)
    slug = load_spec(spec).slug
    env = {"LUIGI_CONFIG_PATH": str(cloud.config_file(tmp_path / "luigi.cfg"))}
    ecs = ["--executor", "ecs", "--program", str(spec)]
    done = {(killed_date, first)}  # the cohorts whose containers the fake agent runs
    with FakeAgent(cloud, lambda tags: (tags["run_date"], tags["cohort"]) in done) as agent:
        killed = start_run(cloud, env, "--run-date", killed_date, "--workers", "3", *ecs)
        live = start_run(cloud, env, "--run-date", live_date, "--workers", "1", "--cohort", first,
                         "--warehouse", f"duckdb://{tmp_path / 'live.duckdb'}", *ecs)  # fmt: skip
        try:
            wait_for(lambda: storage.listdir(f"{cloud.root}/{killed_date}/ingest/{first}"),
                     timeout=60, what=f"cohort {first} to finish")  # fmt: skip
            wait_for(lambda: len(cloud.running_tasks(run_date=killed_date)) == 2, timeout=30,
                     what="the other cohorts' tasks")  # fmt: skip
            wait_for(lambda: cloud.running_tasks(run_date=live_date), what="the live run's task")
        except AssertionError:
            killed.kill()
            live.kill()
            raise AssertionError(f"{killed.communicate()[0]}\n{live.communicate()[0]}") from None
        orphans = {t["taskArn"] for t in cloud.running_tasks(run_date=killed_date)}

        os.killpg(killed.pid, signal.SIGKILL)  # the worker dies, its luigi processes with it
        killed.wait()
        killed_at = time.monotonic()
        # Within the lease TTL its tasks still look alive: the reaper leaves them alone.
        early = reap(ecs=cloud.ecs, cluster=CLUSTER, ttl=3, default_root=cloud.root)
        assert early.reaped == [] and early.kept == 3
        time.sleep(max(0.0, 3.5 - (time.monotonic() - killed_at)))
        reaped = run_pipeline(cloud, "reap", env={**env, "LUIGI_CONFIG_PATH": str(
            cloud.config_file(tmp_path / "reap.cfg", reaper={"executors": "ecs"}))})  # fmt: skip
        assert reaped.returncode == 0, reaped.stdout + reaped.stderr
        stopped_lines = [line for line in reaped.stdout.splitlines() if line.startswith("stopped")]
        assert len(stopped_lines) == 2
        assert all(
            f"run_date {killed_date}" in line and "expired" in line for line in stopped_lines
        )
        assert {line.split()[2] for line in stopped_lines} == orphans
        assert cloud.running_tasks(run_date=killed_date) == []  # nothing of that run is left
        assert len(cloud.running_tasks(run_date=live_date)) == 1  # the live run is untouched

        done.add((live_date, first))  # now let the live run's container finish
        out, _ = live.communicate(timeout=60)
        assert live.returncode == 0, out + luigi_errors(out)

        done.update((killed_date, code) for code in rest)
        again = start_run(cloud, env, "--run-date", killed_date, "--workers", "3", *ecs)
        out, _ = again.communicate(timeout=90)
        assert again.returncode == 0, out
        assert f"cohorts: {len(codes)} done, 0 failed" in out
        assert agent.errors == []
    # The finished cohort ran once; the reaped ones ran again, nothing else.
    runs = sorted(tags_of(t)["cohort"] for t in all_tasks(cloud, run_date=killed_date))
    assert runs == sorted([first, *rest, *rest])
    assert sorted(t["cohort"] for t in agent.ran if t["run_date"] == killed_date) == sorted(
        [first, *rest]
    )
    assert all(code == 0 for code in agent.exit_codes.values())
    for code in codes:
        assert storage.exists(f"{cloud.root}/{killed_date}/model/{code}/{slug}/results.parquet")
    sql = f"SELECT DISTINCT cohort FROM model_estimates WHERE run_date = '{killed_date}'"
    loaded = query(cloud.home / "warehouse.duckdb", sql)
    assert sorted(c for (c,) in loaded) == codes
    sql = (
        "SELECT executor, exit_code, vcpu_seconds > 0 FROM pipeline_runs WHERE status = 'succeeded'"
    )
    runs_table = query(cloud.home / "warehouse.duckdb", sql)
    assert set(runs_table) == {("ecs", 0, True)} and len(runs_table) == len(codes)
    # The reaped attempts are recorded as abandoned, never as a second success.
    sql = "SELECT cohort FROM pipeline_runs WHERE status = 'abandoned' ORDER BY 1"
    assert [c for (c,) in query(cloud.home / "warehouse.duckdb", sql)] == sorted(rest)
    # The program's log, next to the targets in S3, holds the container's CloudWatch tail.
    (log_uri,) = storage.listdir(f"{cloud.root}/{killed_date}/logs/programs/{first}")
    log = storage.read_bytes(log_uri).decode()
    assert "[ecs]" in log and "wrote" in log and "[wrapper]" in log
