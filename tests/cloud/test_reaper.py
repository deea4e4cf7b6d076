"""The reaper against moto: orphans stopped with their reason, live runs never touched."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline import storage
from pipeline.executors.cloud import task_tags
from pipeline.executors.lease import LeaseKeeper
from pipeline.executors.reaper import reap
from pipeline.layout import lease_uri
from tests.cloud.conftest import CLUSTER, QUEUE, Cloud, run_pipeline
from tests.cloud.helpers import batch_executor, ecs_executor, make_job
from tests.ops.conftest import DogStatsdSink, wait_for


def write_lease(root: str, lease_id: str, renewed_at: float) -> None:
    document = {"lease": lease_id, "host": "worker-1", "pid": 4242, "renewed_at": renewed_at}
    storage.write_json(lease_uri(root, lease_id), document)


def start_ecs_task(cloud: Cloud, tmp_path: Path, cohort: str, lease_id: str,
                   deadline: float) -> str:  # fmt: skip
    executor = ecs_executor()
    job = make_job(tmp_path, cohort=cohort)
    tags = task_tags(job, lease_id=lease_id, lease_root=cloud.root, deadline=deadline)
    params = executor.run_task_params(job, ["python"], {}, tags)
    return str(executor.client.run_task(**params)["tasks"][0]["taskArn"])


def test_reaper_stops_orphans_and_keeps_live_tasks(cloud: Cloud, tmp_path: Path) -> None:
    now = time.time()
    write_lease(cloud.root, "live", now - 5)
    write_lease(cloud.root, "stale", now - 100)
    later, earlier = now + 3600, now - 30
    arns = {
        "live": start_ecs_task(cloud, tmp_path, "live", "live", later),
        "stale": start_ecs_task(cloud, tmp_path, "stale", "stale", later),
        "gone": start_ecs_task(cloud, tmp_path, "gone", "never-written", later),
        "late": start_ecs_task(cloud, tmp_path, "late", "live", earlier),
    }
    other = cloud.ecs.run_task(cluster=CLUSTER, taskDefinition="estimator-test",
                               launchType="EC2")["tasks"][0]["taskArn"]  # fmt: skip
    common = {"ecs": cloud.ecs, "cluster": CLUSTER, "ttl": 60, "default_root": cloud.root}

    dry = reap(**common, dry_run=True)
    assert sorted(r.cohort for r in dry.reaped) == ["gone", "late", "stale"]
    assert not any(r.stopped for r in dry.reaped) and dry.kept == 1
    assert len(cloud.running_tasks()) == 5

    report = reap(**common)
    reasons = {r.cohort: r.reason for r in report.reaped}
    assert report.errors == [] and report.kept == 1
    assert (
        reasons["stale"].startswith("lease stale expired: last renewed 10")
        and "worker-1" in reasons["stale"]
    )
    assert reasons["gone"] == "lease never-written is gone (its worker ended or never wrote it)"
    assert reasons["late"].startswith("deadline passed 3")
    assert all(r.stopped for r in report.reaped)
    assert report.reaped[0].line().startswith("stopped ecs arn:aws:ecs:")
    running = {t["taskArn"] for t in cloud.running_tasks()}
    assert running == {arns["live"], other}  # the live run and a non-pipeline task
    (stale,) = cloud.ecs.describe_tasks(cluster=CLUSTER, tasks=[arns["stale"]])["tasks"]
    assert stale["stoppedReason"].startswith("survey-pipeline reaper: lease stale expired")
    assert reap(**common).reaped == []  # safe to run again


def test_a_held_lease_keeps_its_tasks_until_it_is_released(cloud: Cloud, tmp_path: Path) -> None:
    keeper = LeaseKeeper(cloud.root, interval=0.2, ttl=1)
    lease_id = keeper.acquire()
    arn = start_ecs_task(cloud, tmp_path, "held", lease_id, time.time() + 3600)
    common = {"ecs": cloud.ecs, "cluster": CLUSTER, "ttl": 1, "default_root": cloud.root}
    time.sleep(1.5)  # longer than the TTL: only renewals keep it fresh
    assert keeper.renewals >= 3
    assert reap(**common).reaped == []
    keeper.release()
    assert not storage.exists(lease_uri(cloud.root, lease_id))
    assert [r.id for r in reap(**common).reaped] == [arn]


def test_reaper_terminates_orphaned_batch_jobs(cloud: Cloud, tmp_path: Path) -> None:
    # moto's Docker-backed Batch keeps jobs SUBMITTED while its state manager holds them.
    from tests.cloud.conftest import _post

    _post(f"{cloud.url}/moto-api/config", {"batch": {"use_docker": True}})
    cloud.set_transition("batch::job", {"progression": "manual", "times": 10**9})
    try:
        executor = batch_executor()
        now = time.time()
        write_lease(cloud.root, "live", now)
        ids = {}
        for cohort, lease_id in (("live", "live"), ("orphan", "dead")):
            job = make_job(tmp_path, cohort=cohort)
            tags = task_tags(job, lease_id=lease_id, lease_root=cloud.root, deadline=now + 3600)
            params = executor.submit_job_params(job, ["python"], {}, tags)
            ids[cohort] = executor.client.submit_job(**params)["jobId"]
        report = reap(batch=cloud.batch, job_queue=QUEUE, ttl=60, default_root=cloud.root)
        assert [(r.executor, r.id, r.cohort) for r in report.reaped] == [
            ("batch", ids["orphan"], "orphan")
        ]
        assert report.kept == 1 and report.errors == []
        jobs = {j["jobId"]: j for j in cloud.batch.describe_jobs(jobs=list(ids.values()))["jobs"]}
        assert jobs[ids["orphan"]]["statusReason"].startswith("survey-pipeline reaper: lease dead")
        assert "statusReason" not in jobs[ids["live"]]
    finally:
        cloud.set_transition("batch::job", {"progression": "manual", "times": 1})
        _post(f"{cloud.url}/moto-api/config", {"batch": {"use_docker": False}})


def test_pipeline_reap_command(cloud: Cloud, tmp_path: Path) -> None:
    arn = start_ecs_task(cloud, tmp_path, "asthma", "no-such-lease", time.time() + 3600)
    env = {"LUIGI_CONFIG_PATH": str(cloud.config_file(tmp_path / "luigi.cfg",
                                                      reaper={"executors": "ecs"}))}  # fmt: skip
    dry = run_pipeline(cloud, "reap", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert (
        f"would stop ecs {arn} (run_date 2026-11-22, cohort asthma): lease no-such-lease"
        in dry.stdout
    )
    assert len(cloud.running_tasks()) == 1
    sink = DogStatsdSink()
    try:
        real = run_pipeline(cloud, "reap", env={**env, **sink.env()})
        assert real.returncode == 0, real.stderr
        assert f"stopped ecs {arn}" in real.stdout and "reaper: stopped 1, kept 0" in real.stdout
        assert cloud.running_tasks() == []
        assert wait_for(lambda: sink.metrics())
        assert sink.metrics() == [("survey_pipeline.orphans.reaped", 1.0, "c", {"executor": "ecs"})]
    finally:
        sink.close()
    broken = run_pipeline(cloud, "reap", env={**env, "LUIGI_CONFIG_PATH": str(
        cloud.config_file(tmp_path / "bad.cfg", ecs={"cluster": "nope"},
                          reaper={"executors": "ecs"}))})  # fmt: skip
    assert broken.returncode == 1
    assert "cannot list ecs cluster nope" in broken.stderr


def test_a_killed_workers_lease_outlives_its_first_reattached_task(
    cloud: Cloud, tmp_path: Path
) -> None:
    """A restart re-attaches a killed worker's tasks one by one, and all of them carry the
    killed worker's lease. The first one to end (a program that finished while nobody
    watched) must not delete that lease: a reap in between would stop every task of it not
    re-attached yet (found by the rehearsal: the lease vanished under the restart). Left
    to expire instead, it keeps them for a TTL, and no longer: one nobody re-attaches
    is an orphan like any other."""
    write_lease(cloud.root, "killed", time.time() - 0.5)
    arns = [start_ecs_task(cloud, tmp_path, c, "killed", time.time() + 3600) for c in "ab"]
    keeper = LeaseKeeper(cloud.root, interval=0.2, ttl=1)
    common = {"ecs": cloud.ecs, "cluster": CLUSTER, "ttl": 1, "default_root": cloud.root}

    def follow_one() -> None:  # re-attach a task of the killed worker, see it end
        keeper.acquire()
        keeper.adopt("killed")
        keeper.disown("killed")
        keeper.release()

    follow_one()  # the task that finished while nobody watched
    assert reap(**common).reaped == []
    keeper.acquire()
    keeper.adopt("killed")  # a running one, re-attached later
    time.sleep(1.5)  # longer than the TTL: only our renewals keep it fresh
    assert reap(**common).reaped == []
    keeper.disown("killed")
    keeper.release()
    time.sleep(1.5)  # no re-attached task holds it: it expires
    assert sorted(r.id for r in reap(**common).reaped) == sorted(arns)
    keeper.close()  # the restart's process ends: its lease and the adopted one go with it
    assert storage.listdir(f"{cloud.root}/_leases") == []
