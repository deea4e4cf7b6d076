"""The ECS executor against a real moto server: the request, tags, stop paths, polling."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.errors import ConfigError
from pipeline.executors import Events
from pipeline.executors.base import Interrupted
from pipeline.executors.cloud import CloudError, Watcher, task_tags
from pipeline.executors.ecs import EcsExecutor, EcsSettings
from pipeline.layout import LEASE_DIR
from tests.cloud.conftest import CLUSTER, CONTAINER, LOG_PREFIX, Cloud, tags_of
from tests.cloud.helpers import (
    ECS_SETTINGS,
    ecs_executor,
    in_background,
    make_job,
    wait_for,
)


def only_task(cloud: Cloud) -> dict:
    tasks = cloud.running_tasks()
    return tasks[0] if len(tasks) == 1 else {}


def test_runs_the_wrapper_with_tags_and_records_the_run(cloud: Cloud, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    seen: dict[str, list[str]] = {"status": [], "url": []}
    events = Events(status=seen["status"].append, tracking_url=seen["url"].append)
    leases_during_run: list[str] = []

    def container_finishes() -> None:
        task = wait_for(lambda: only_task(cloud), what="the task")
        leases_during_run.extend(storage.listdir(f"{cloud.root}/{LEASE_DIR}"))
        stream = f"{LOG_PREFIX}/{CONTAINER}/{task['taskArn'].rsplit('/', 1)[-1]}"
        cloud.put_log(stream, [f"program line {i}" for i in range(80)])
        time.sleep(0.3)
        cloud.ecs.stop_task(
            cluster=CLUSTER, task=task["taskArn"], reason="Essential container exited"
        )

    in_background(container_finishes)
    started = time.time()
    record = ecs_executor().run(job, events)

    (task,) = cloud.ecs.describe_tasks(cluster=CLUSTER, tasks=[record.job_id],
                                       include=["TAGS"])["tasks"]  # fmt: skip
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == CONTAINER
    assert override["command"] == ["python", "-m", "pipeline.wrapper", "--job", job.job_uri]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert env == {"PIPELINE_RUN_DATE": "2026-11-22", "PIPELINE_COHORT": "asthma",
                   "PIPELINE_ATTEMPT": job.attempt, "PIPELINE_JOB": job.job_uri}  # fmt: skip
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("2048", "4096")
    assert task["startedBy"] == "survey-pipeline"
    tags = tags_of(task)
    assert tags["pipeline"] == "survey-pipeline"
    assert (tags["run_date"], tags["cohort"], tags["attempt"]) == (
        "2026-11-22",
        "asthma",
        job.attempt,
    )
    assert tags["lease_store"] == cloud.root
    assert leases_during_run == [f"{cloud.root}/{LEASE_DIR}/{tags['lease']}.json"]
    assert started + 3600 + 900 - 5 <= int(tags["deadline"]) <= time.time() + 3600 + 900
    assert not any("testing" in value for value in tags.values())  # no credentials in tags

    assert record.exit_code == 0 and record.error == ""
    assert record.executor == "ecs" and record.host == f"cluster {CLUSTER}"
    task_id = record.job_id.rsplit("/", 1)[-1]
    assert seen["url"] == [record.tracking_url]
    assert f"/ecs/v2/clusters/{CLUSTER}/tasks/{task_id}" in record.tracking_url
    assert "cloudwatch" in record.log_uri and task_id in record.log_uri
    assert any("RUNNING on ecs" in s and "logs: https://" in s for s in seen["status"])
    wall = time.time() - started
    assert 0 < record.vcpu_seconds <= 2 * wall  # 2048 CPU units = 2 vCPU for the wall time
    assert record.memory_gib_seconds == pytest.approx(2 * record.vcpu_seconds, rel=0.01)
    assert record.cost_usd > 0
    log = job.log_path.read_text()
    assert "program line 79" in log and "program line 30" in log
    assert "program line 29" not in log  # only the tail (log_lines = 50)
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []  # released when done


def test_interrupt_stops_the_task(cloud: Cloud, tmp_path: Path) -> None:
    def interrupt_when_running() -> None:
        wait_for(lambda: only_task(cloud), what="the task")
        signal.raise_signal(signal.SIGTERM)  # what luigi's worker sends on a task timeout

    in_background(interrupt_when_running)
    job = make_job(tmp_path)
    with pytest.raises(Interrupted):
        ecs_executor().run(job, Events())
    assert cloud.running_tasks() == []
    arns = cloud.ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
    (task,) = cloud.ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    assert task["stoppedReason"] == "survey-pipeline: worker interrupted (SIGTERM)"
    assert "stopped: worker interrupted (SIGTERM)" in job.log_path.read_text()
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


def test_deadline_stops_the_task_and_fails_the_run(cloud: Cloud, tmp_path: Path) -> None:
    executor = ecs_executor()
    executor.deadline_grace = 0.3
    record = executor.run(make_job(tmp_path, timeout=0.5), Events())
    assert cloud.running_tasks() == []
    assert record.exit_code == 124
    assert "stopped by the pipeline: deadline" in record.error


def test_submit_failure_names_the_cluster(cloud: Cloud, tmp_path: Path) -> None:
    settings = EcsSettings(**{**ECS_SETTINGS.__dict__, "cluster": "no-such-cluster"})
    with pytest.raises(CloudError, match="RunTask for cohort asthma on cluster no-such-cluster"):
        EcsExecutor(settings).run(make_job(tmp_path), Events())
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


def test_needs_an_s3_storage_root(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_STORAGE_ROOT", str(tmp_path / "work"))
    with pytest.raises(ConfigError, match=r"needs \[storage\] root = s3://"):
        ecs_executor().run(make_job(tmp_path), Events())


def test_fargate_request_uses_awsvpc_networking(cloud: Cloud, tmp_path: Path) -> None:
    fargate = EcsSettings(**{**ECS_SETTINGS.__dict__, "launch_type": "FARGATE",
                             "subnets": ("subnet-1", "subnet-2"), "security_groups": ("sg-1",),
                             "platform_version": "1.4.0"})  # fmt: skip
    executor = EcsExecutor(fargate)
    job = make_job(tmp_path)
    params = executor.run_task_params(job, ["cmd"], {}, {"pipeline": "survey-pipeline"})
    assert params["launchType"] == "FARGATE" and params["platformVersion"] == "1.4.0"
    assert params["networkConfiguration"] == {
        "awsvpcConfiguration": {"subnets": ["subnet-1", "subnet-2"],
                                "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}
    }  # fmt: skip
    no_subnets = EcsExecutor(EcsSettings(**{**ECS_SETTINGS.__dict__, "launch_type": "FARGATE"}))
    with pytest.raises(ConfigError, match="subnets"):
        no_subnets.run_task_params(job, ["cmd"], {}, {})


def test_polling_batches_up_to_100_tasks_per_call(cloud: Cloud, tmp_path: Path) -> None:
    executor = ecs_executor()
    calls: list[int] = []
    executor.client.meta.events.register(
        "provide-client-params.ecs.DescribeTasks",
        lambda params, **_: calls.append(len(params["tasks"])),
    )
    job = make_job(tmp_path)
    tags = task_tags(job, lease_id="l", lease_root=cloud.root, deadline=time.time() + 60)
    arns = []
    for _ in range(15):
        params = executor.run_task_params(job, ["cmd"], {}, tags)
        del params["clientToken"]
        arns += [t["taskArn"] for t in executor.client.run_task(**{**params, "count": 10})["tasks"]]
    assert len(arns) == 150
    watcher = Watcher(executor.describe, min_interval=0.2, max_interval=0.2)
    watches = [watcher.watch(arn) for arn in arns]
    wait_for(lambda: all(w.polls >= 3 for w in watches), what="three polls of every task")
    watcher.close(timeout=30)  # a describe call in flight is counted in both sums
    assert max(calls) == 100
    assert sum(calls) == sum(w.polls for w in watches)  # every task in every call once
    assert len(calls) <= 2 * max(w.polls for w in watches) + 2  # ceil(150 / 100) per poll
    assert all(w.state is not None and w.state.status == "RUNNING" for w in watches)
