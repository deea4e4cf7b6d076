"""ECS tasks the infrastructure ended are submitted again; a program's own exit never is.

moto cannot stop a task with a stop code of its choosing, so the service's answers are
replayed by botocore's Stubber on real clients (the lease still goes to the moto server's
S3): the first task is interrupted by Fargate Spot (or loses its EC2 host), the second
runs to its end."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import luigi.configuration
import pytest
from botocore.stub import ANY, Stubber

from pipeline.errors import ConfigError
from pipeline.executors import Events, aws
from pipeline.executors.ecs import EcsExecutor, EcsSettings, interruption
from tests.cloud.conftest import CLUSTER, CONTAINER, LOG_GROUP, LOG_PREFIX, Cloud
from tests.cloud.helpers import ECS_SETTINGS, make_job
from tests.cloud.test_states import STOPPED, T0, TASK_DEFINITION_ARN

TASK = f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/"
FIRST, SECOND = TASK + "1111aaaa", TASK + "2222bbbb"
DIGEST = "sha256:" + "ab" * 32
SPOT = {"stopCode": "SpotInterruption", "stoppedReason": "Your Spot Task was interrupted."}
HOST_LOST = {"stopCode": "TaskFailedToStart", "stoppedReason": "Host EC2 (instance i-0abc) "
             "terminated."}  # fmt: skip


def task(arn: str, status: str, **extra: Any) -> dict[str, Any]:
    container = {"name": CONTAINER, "lastStatus": status, "image": "toy:1.0",
                 "imageDigest": DIGEST, **extra.pop("container", {})}  # fmt: skip
    return {"taskArn": arn, "lastStatus": status, "desiredStatus": "RUNNING",
            "containers": [container], **extra}  # fmt: skip


def stub_definition(stub: Stubber) -> None:
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": {"family": "estimator-test", "taskDefinitionArn": TASK_DEFINITION_ARN,
            "containerDefinitions": [{"name": CONTAINER, "image": "toy:1.0",
            "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": LOG_GROUP, "awslogs-stream-prefix": LOG_PREFIX}}}]}},
        {"taskDefinition": ANY, "include": ["TAGS"]},
    )  # fmt: skip


def stub_task(ecs: Stubber, logs: Stubber, arn: str, ending: dict[str, Any]) -> None:
    """RunTask answered with ``arn``, RUNNING, then STOPPED as ``ending``; its log tail."""
    ecs.add_response("run_task", {"tasks": [task(arn, "PROVISIONING")], "failures": []}, None)
    ecs.add_response("describe_tasks", {"tasks": [task(arn, "RUNNING")], "failures": []},
                     {"cluster": CLUSTER, "tasks": [arn]})  # fmt: skip
    ecs.add_response("describe_tasks", {"tasks": [task(arn, "STOPPED", **ending)],
                     "failures": []}, {"cluster": CLUSTER, "tasks": [arn]})  # fmt: skip
    stream = f"{LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}"
    logs.add_response(
        "get_log_events",
        {"events": [{"timestamp": 1, "message": f"estimator in {arn[-8:]}"}]},
        {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": False,
         "limit": 50},
    )  # fmt: skip


def run(tmp_path: Path, endings: list[tuple[str, dict[str, Any]]], attempts: int = 3):
    ecs, logs = aws.ecs_client(), aws.logs_client()
    requests: list[dict[str, Any]] = []
    ecs.meta.events.register(
        "provide-client-params.ecs.RunTask", lambda params, **_: requests.append(dict(params))
    )
    statuses: list[str] = []
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        stub_definition(ecs_stub)
        for arn, ending in endings:
            stub_task(ecs_stub, logs_stub, arn, ending)
        executor = EcsExecutor(replace(ECS_SETTINGS, attempts=attempts), client=ecs,
                               logs_client=logs)  # fmt: skip
        job = make_job(tmp_path)
        record = executor.run(job, Events(status=statuses.append))
        # Every stubbed answer was used, and nothing more was asked: a retry the test
        # did not expect would have failed on the Stubber's empty queue.
        ecs_stub.assert_no_pending_responses()
        logs_stub.assert_no_pending_responses()
    return job, record, requests, statuses


INTERRUPTED = {**SPOT, "container": {"exitCode": 143}, **STOPPED}
SUCCEEDED = {"stopCode": "EssentialContainerExited", "container": {"exitCode": 0},
             **STOPPED, "stoppedAt": T0 + timedelta(seconds=50)}  # fmt: skip


@pytest.mark.parametrize("ending", [SPOT, HOST_LOST], ids=["fargate-spot", "lost-ec2-host"])
def test_an_interrupted_task_is_submitted_again_then_succeeds(
    cloud: Cloud, tmp_path: Path, ending: dict[str, Any]
) -> None:
    first = {**ending, "container": {"exitCode": 143}, **STOPPED}
    job, record, requests, statuses = run(tmp_path, [(FIRST, first), (SECOND, SUCCEEDED)])

    assert record.exit_code == 0 and record.error == "" and record.job_id == SECOND
    assert (record.image, record.image_digest) == ("toy:1.0", DIGEST)
    assert record.interruption == ""
    (abandoned,) = record.interrupted
    assert abandoned.job_id == FIRST and abandoned.exit_code == 143
    assert abandoned.interruption == f"{ending['stopCode']}: {ending['stoppedReason']}"
    assert ending["stoppedReason"] in abandoned.error
    assert abandoned.vcpu_seconds == 200.0  # 100 s billed × 2 vCPU, its own cost
    assert abandoned.cost_usd > 0 and record.cost_usd > 0
    assert record.vcpu_seconds == 100.0  # the second task ran 50 s
    assert record.total_cost_usd == pytest.approx(abandoned.cost_usd + record.cost_usd)
    assert abandoned.started_at <= record.started_at
    assert [r["job_id"] for r in record.rows()] == [FIRST, SECOND]
    assert set(record.rows()[0]) == set(record.to_dict())  # same pipeline_runs columns

    # The same job document, command and environment; a new idempotency token.
    assert len(requests) == 2
    one, two = requests
    assert one["overrides"] == two["overrides"]
    assert one["overrides"]["containerOverrides"][0]["command"][-1] == job.job_uri
    assert one["clientToken"] != two["clientToken"]
    assert any("interrupted on ecs 1111aaaa" in s and "2 of 3" in s for s in statuses)
    log = job.log_path.read_text()
    assert "estimator in 1111aaaa" in log and "estimator in 2222bbbb" in log
    assert f"{FIRST} interrupted" in log


def test_a_program_exit_1_is_not_submitted_again(cloud: Cloud, tmp_path: Path) -> None:
    failed = {"stopCode": "EssentialContainerExited", "stoppedReason": "Essential container "
              "in task exited", "container": {"exitCode": 1}, **STOPPED}  # fmt: skip
    _, record, requests, _ = run(tmp_path, [(FIRST, failed)])
    assert record.exit_code == 1 and record.job_id == FIRST
    assert record.interrupted == [] and len(requests) == 1
    assert "exit code 1" in record.error


def test_interruptions_stop_after_attempts(cloud: Cloud, tmp_path: Path) -> None:
    _, record, requests, _ = run(tmp_path, [(FIRST, INTERRUPTED), (SECOND, INTERRUPTED)],
                                 attempts=2)  # fmt: skip
    assert len(requests) == 2
    assert record.job_id == SECOND and record.exit_code == 143
    assert "SpotInterruption" in record.error
    assert [r.job_id for r in record.interrupted] == [FIRST]


def test_what_counts_as_an_interruption() -> None:
    assert interruption(SPOT) == "SpotInterruption: Your Spot Task was interrupted."
    assert interruption({"stopCode": "TerminationNotice"}) == "TerminationNotice"
    assert "i-0abc" in interruption(HOST_LOST)
    assert interruption({"stoppedReason": "EC2 instance i-0abc was terminated"})
    for own in (
        {"stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in "
         "task exited"},
        {"stopCode": "UserInitiated", "stoppedReason": "survey-pipeline: deadline passed"},
        {"stopCode": "TaskFailedToStart", "stoppedReason": "CannotPullContainerError: ..."},
    ):  # fmt: skip
        assert interruption(own) == ""


def test_ecs_attempts_and_capacity_provider_settings(cloud: Cloud, tmp_path: Path) -> None:
    cfg = luigi.configuration.get_config()
    if not cfg.has_section("ecs"):
        cfg.add_section("ecs")
    try:
        cfg.set("ecs", "attempts", "0")
        with pytest.raises(ConfigError, match=r"\[ecs\] attempts = 0"):
            EcsSettings.from_config()
        cfg.set("ecs", "attempts", "2")
        cfg.set("ecs", "capacity_provider", "FARGATE_SPOT")
        cfg.set("ecs", "subnets", "subnet-1")
        settings = EcsSettings.from_config()
    finally:
        for option in ("attempts", "capacity_provider", "subnets"):
            cfg.remove_option("ecs", option)
    assert (settings.attempts, settings.capacity_provider) == (2, "FARGATE_SPOT")
    assert EcsSettings.from_config().attempts == 3  # luigi.cfg's default
    params = EcsExecutor(settings, client=aws.ecs_client(), logs_client=object()).run_task_params(
        make_job(tmp_path), ["cmd"], {}, {}
    )
    assert params["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}
    ]
    assert "launchType" not in params  # RunTask refuses both at once
    assert params["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-1"]
