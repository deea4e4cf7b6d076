"""The image that runs is the program spec's image, against a real moto server: a task or
job definition derived from the configured one, registered once and reused."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from botocore.stub import Stubber

from pipeline.core.spec import spec_from_dict
from pipeline.executors import Events, Job, aws
from pipeline.executors.batch import derived_name
from pipeline.executors.ecs import derived_family, family_of
from tests.cloud.conftest import CLUSTER, JOB_DEFINITION, TASK_DEFINITION, Cloud
from tests.cloud.helpers import (
    batch_executor,
    ecs_executor,
    in_background,
    make_job,
    wait_for,
)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/other-team/model:2.3.1"


def with_image(job: Job, image: str) -> Job:
    spec = spec_from_dict({**job.spec.to_dict(), "image": image})
    return replace(job, spec=spec)


def finish_each_task(cloud: Cloud, count: int) -> threading.Thread:
    """Stop the next ``count`` pipeline tasks as their container would, one after another."""

    def finish() -> None:
        done: set[str] = set()
        while len(done) < count:
            tasks = wait_for(
                lambda: [t for t in cloud.running_tasks() if t["taskArn"] not in done],
                what="a running task",
            )
            for task in tasks:
                time.sleep(0.2)
                cloud.ecs.stop_task(cluster=CLUSTER, task=task["taskArn"], reason="exited")
                done.add(task["taskArn"])

    return in_background(finish)


def container_image(cloud: Cloud, task_definition: str) -> str:
    definition = cloud.ecs.describe_task_definition(taskDefinition=task_definition)
    (container,) = definition["taskDefinition"]["containerDefinitions"]
    return str(container["image"])


def test_ecs_runs_the_spec_image_and_reuses_the_derived_definition(
    cloud: Cloud, tmp_path: Path
) -> None:
    job = with_image(make_job(tmp_path), IMAGE)
    finish_each_task(cloud, 3)
    executor = ecs_executor()
    first = executor.run(job, Events())

    (task,) = cloud.ecs.describe_tasks(cluster=CLUSTER, tasks=[first.job_id])["tasks"]
    family = derived_family(TASK_DEFINITION, IMAGE)
    assert family_of(task["taskDefinitionArn"]) == family
    assert container_image(cloud, task["taskDefinitionArn"]) == IMAGE
    assert first.exit_code == 0 and first.image == IMAGE
    # The configured family's latest revision still runs its own image.
    assert container_image(cloud, TASK_DEFINITION) == "estimator:test"
    assert executor.registrations == 1

    second = executor.run(replace(job, attempt="second", job_uri=job.job_uri + "2"), Events())
    assert executor.registrations == 1  # cached in this process
    # Another process (a fresh executor) finds the derived definition instead of
    # registering it again.
    other = ecs_executor()
    third = other.run(replace(job, attempt="third", job_uri=job.job_uri + "3"), Events())
    assert other.registrations == 0
    revisions = cloud.ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert len(revisions) == 1
    for record in (second, third):
        (ran,) = cloud.ecs.describe_tasks(cluster=CLUSTER, tasks=[record.job_id])["tasks"]
        assert ran["taskDefinitionArn"] == revisions[0]


def test_ecs_concurrent_threads_register_one_definition(cloud: Cloud, tmp_path: Path) -> None:
    executor = ecs_executor()
    job = with_image(make_job(tmp_path), IMAGE)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(executor.task_definition_for(job)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8 and len(set(results)) == 1
    assert executor.registrations == 1
    family = derived_family(TASK_DEFINITION, IMAGE)
    assert len(cloud.ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]) == 1


def test_ecs_empty_or_same_image_runs_the_configured_definition(
    cloud: Cloud, tmp_path: Path
) -> None:
    executor = ecs_executor()
    for image in ("", "estimator:test"):
        job = with_image(make_job(tmp_path), image)
        assert executor.task_definition_for(job) == TASK_DEFINITION
    assert executor.registrations == 0
    assert executor.job_image(with_image(make_job(tmp_path), "")) == "estimator:test"


def test_batch_runs_the_spec_image_and_reuses_the_derived_definition(
    cloud: Cloud, tmp_path: Path
) -> None:
    job = with_image(make_job(tmp_path), IMAGE)
    executor = batch_executor()
    first = executor.run(job, Events())
    (described,) = cloud.batch.describe_jobs(jobs=[first.job_id])["jobs"]
    name = derived_name(JOB_DEFINITION, IMAGE)
    assert f":job-definition/{name}:" in described["jobDefinition"]
    assert first.exit_code == 0 and first.image == IMAGE
    derived = cloud.batch.describe_job_definitions(jobDefinitionName=name)["jobDefinitions"]
    assert [d["containerProperties"]["image"] for d in derived] == [IMAGE]
    configured = cloud.batch.describe_job_definitions(jobDefinitionName=JOB_DEFINITION)
    assert [d["containerProperties"]["image"] for d in configured["jobDefinitions"]] == [
        "estimator:test"
    ]
    other = batch_executor()
    second = other.run(replace(job, attempt="second"), Events())
    assert other.registrations == 0
    (again,) = cloud.batch.describe_jobs(jobs=[second.job_id])["jobs"]
    assert again["jobDefinition"] == described["jobDefinition"]


def test_ecs_reads_the_definition_without_tags_when_tags_are_not_allowed(
    cloud: Cloud, tmp_path: Path
) -> None:
    """A worker role that may describe but not list tags still runs (Stubber: the answer
    moto cannot give)."""
    client = aws.ecs_client()
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/estimator-test:1"
    container = {"name": "estimator", "image": "estimator:test"}
    definition = {"taskDefinition": {"family": "estimator-test", "taskDefinitionArn": arn,
                                     "containerDefinitions": [container]}}  # fmt: skip
    with Stubber(client) as stub:
        stub.add_client_error("describe_task_definition", "AccessDeniedException",
                              expected_params={"taskDefinition": TASK_DEFINITION,
                                               "include": ["TAGS"]})  # fmt: skip
        stub.add_response("describe_task_definition", definition,
                          {"taskDefinition": TASK_DEFINITION})  # fmt: skip
        executor = ecs_executor(client=client)
        assert executor.job_image(with_image(make_job(tmp_path), "")) == "estimator:test"
        stub.assert_no_pending_responses()
