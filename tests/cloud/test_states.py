"""A task's life as moto cannot play it: PENDING → RUNNING → STOPPED with real exit codes,
stop codes and log tails, answered by botocore's Stubber on real clients (the executors'
lease still goes to the moto server's S3)."""

from __future__ import annotations

import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from pipeline.executors import Events, aws
from pipeline.executors.base import Interrupted
from pipeline.executors.batch import retry_strategy
from pipeline.executors.ecs import EcsExecutor
from tests.cloud.conftest import CLUSTER, CONTAINER, LOG_GROUP, LOG_PREFIX, Cloud
from tests.cloud.helpers import (
    ECS_SETTINGS,
    batch_executor,
    ecs_executor,
    in_background,
    make_job,
    wait_for,
)

ARN = f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/0123456789abcdef"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LOG_LINES = [f"estimator: step {i}" for i in range(30)] + ["Traceback: boom"]


def ecs_task(status: str, **extra: Any) -> dict[str, Any]:
    container = {"name": CONTAINER, "lastStatus": status, **extra.pop("container", {})}
    return {"taskArn": ARN, "lastStatus": status, "desiredStatus": "RUNNING",
            "containers": [container], **extra}  # fmt: skip


def stub_ecs_run(stub: Stubber, states: list[dict[str, Any] | str]) -> None:
    """The calls of one run: task definition, RunTask, then one DescribeTasks per state
    (a string is an error code)."""
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": {"family": "estimator-test", "taskDefinitionArn": TASK_DEFINITION_ARN,
            "containerDefinitions": [{
            "name": CONTAINER, "image": "toy:1.0", "logConfiguration": {"logDriver": "awslogs",
            "options": {"awslogs-group": LOG_GROUP, "awslogs-stream-prefix": LOG_PREFIX}}}]}},
        {"taskDefinition": ANY, "include": ["TAGS"]},
    )  # fmt: skip
    stub_run_task(stub, states)


TASK_DEFINITION_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/estimator-test:1"


def stub_run_task(stub: Stubber, states: list[dict[str, Any] | str]) -> None:
    """RunTask, then one DescribeTasks per state (a string is an error code)."""
    stub.add_response("run_task", {"tasks": [ecs_task("PROVISIONING")], "failures": []}, None)
    for state in states:
        if isinstance(state, str):
            stub.add_client_error("describe_tasks", service_error_code=state,
                                  http_status_code=400)  # fmt: skip
        else:
            stub.add_response("describe_tasks", {"tasks": [state], "failures": []},
                              {"cluster": CLUSTER, "tasks": [ARN]})  # fmt: skip


def stub_log_tail(stub: Stubber, group: str, stream: str, lines: list[str]) -> None:
    stub.add_response(
        "get_log_events",
        {"events": [{"timestamp": i, "message": line} for i, line in enumerate(lines)]},
        {"logGroupName": group, "logStreamName": stream, "startFromHead": False, "limit": 50},
    )


STOPPED = {"desiredStatus": "STOPPED", "pullStartedAt": T0, "startedAt": T0 + timedelta(seconds=5),
           "stoppedAt": T0 + timedelta(seconds=100)}  # fmt: skip


@pytest.mark.parametrize(
    ("stopped", "exit_code", "expected"),
    [
        pytest.param(
            ecs_task("STOPPED", stopCode="EssentialContainerExited", container={"exitCode": 0},
                     **STOPPED), 0, [], id="success"),
        pytest.param(
            ecs_task("STOPPED", stopCode="EssentialContainerExited",
                     stoppedReason="Essential container in task exited",
                     container={"exitCode": 137, "reason": "OutOfMemoryError: Container "
                                "killed due to memory usage"}, **STOPPED),
            137, ["Traceback: boom", "exit code 137", "out of memory?", "4096 MiB",
                  "OutOfMemoryError"], id="oom"),
        pytest.param(
            ecs_task("STOPPED", stopCode="EssentialContainerExited", container={"exitCode": 3},
                     **STOPPED), 3, ["Traceback: boom", "exit code 3"], id="program-failed"),
        pytest.param(
            ecs_task("STOPPED", stopCode="TaskFailedToStart",
                     stoppedReason="CannotPullContainerError: pull image manifest has been "
                     "retried 5 time(s): toy:1.0 not found", desiredStatus="STOPPED"),
            None, ["without an exit code", "TaskFailedToStart", "CannotPullContainerError"],
            id="cannot-pull"),
        pytest.param(
            ecs_task("STOPPED", stopCode="SpotInterruption", stoppedReason="Your Spot Task was "
                     "interrupted.", desiredStatus="STOPPED"),
            None, ["SpotInterruption"], id="spot"),
    ],
)  # fmt: skip
def test_ecs_exit_codes_and_stop_codes(
    cloud: Cloud, tmp_path: Path, stopped: dict[str, Any], exit_code: int | None,
    expected: list[str],
) -> None:  # fmt: skip
    ecs, logs = aws.ecs_client(), aws.logs_client()
    statuses: list[str] = []
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        stub_ecs_run(ecs_stub, [ecs_task("PENDING"), ecs_task("RUNNING"), stopped])
        stub_log_tail(logs_stub, LOG_GROUP, f"{LOG_PREFIX}/{CONTAINER}/0123456789abcdef", LOG_LINES)
        # One submission: how each end looks when nothing is resubmitted (the Spot case
        # with [ecs] attempts = 1; tests/cloud/test_interruptions.py has the retries).
        executor = EcsExecutor(replace(ECS_SETTINGS, attempts=1), client=ecs, logs_client=logs)
        record = executor.run(make_job(tmp_path), Events(status=statuses.append))
        ecs_stub.assert_no_pending_responses()
        logs_stub.assert_no_pending_responses()
    assert record.exit_code == exit_code
    assert record.interrupted == []
    assert [s.split()[2] for s in statuses] == ["submitted", "PENDING", "RUNNING", "STOPPED"]
    if exit_code == 0:
        assert record.error == ""
    for text in expected:
        assert text in record.error
    if expected:
        assert record.error.splitlines()[-1].startswith("ecs 0123456789abcdef STOPPED")
    if "pullStartedAt" in stopped:  # billed from image pull to stop: 100 s × 2 vCPU, 4 GiB
        assert (record.vcpu_seconds, record.memory_gib_seconds) == (200.0, 400.0)
        assert record.cost_usd == pytest.approx((200 * 0.04048 + 400 * 0.004445) / 3600, abs=1e-6)
    assert "estimator: step 29" in (tmp_path / "logs" / "asthma.log").read_text()


def test_ecs_polling_backs_off_when_throttled(cloud: Cloud, tmp_path: Path) -> None:
    ecs, logs = aws.ecs_client(), aws.logs_client()
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        done = ecs_task("STOPPED", container={"exitCode": 0}, **STOPPED)
        stub_ecs_run(ecs_stub, ["ThrottlingException", "ThrottlingException", done])
        stub_log_tail(logs_stub, LOG_GROUP, f"{LOG_PREFIX}/{CONTAINER}/0123456789abcdef", [])
        executor = ecs_executor(client=ecs, logs_client=logs)
        record = executor.run(make_job(tmp_path), Events())
        ecs_stub.assert_no_pending_responses()
    assert record.exit_code == 0
    assert executor.watcher().calls == 3


def test_ecs_access_denied_while_watching_stops_the_task(cloud: Cloud, tmp_path: Path) -> None:
    ecs, logs = aws.ecs_client(), aws.logs_client()
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        stub_ecs_run(ecs_stub, [ecs_task("RUNNING"), "AccessDeniedException"])
        ecs_stub.add_response("stop_task", {"task": ecs_task("STOPPING")},
                              {"cluster": CLUSTER, "task": ARN, "reason": ANY})  # fmt: skip
        stub_log_tail(logs_stub, LOG_GROUP, f"{LOG_PREFIX}/{CONTAINER}/0123456789abcdef", [])
        with pytest.raises(Exception, match=r"cannot watch .*AccessDeniedException"):
            ecs_executor(client=ecs, logs_client=logs).run(make_job(tmp_path), Events())
        ecs_stub.assert_no_pending_responses()


JOB_ID = "4d6a7d1c-batch-job"


def batch_job(status: str, **extra: Any) -> dict[str, Any]:
    return {"jobId": JOB_ID, "jobName": "toy", "jobQueue": "q", "status": status,
            "startedAt": 0, "jobDefinition": "d", **extra}  # fmt: skip


def stub_batch_run(stub: Stubber, states: list[dict[str, Any]]) -> None:
    # The configured job definition already runs the spec's image: nothing is derived.
    stub.add_response(
        "describe_job_definitions",
        {"jobDefinitions": [{"jobDefinitionName": "estimator-test-job", "revision": 1,
                             "jobDefinitionArn": "arn:aws:batch:us-east-1:123456789012:"
                             "job-definition/estimator-test-job:1", "type": "container",
                             "containerProperties": {"image": "toy:1.0"}}]},
        {"jobDefinitionName": "estimator-test-job", "status": "ACTIVE"},
    )  # fmt: skip
    stub.add_response("submit_job", {"jobName": "toy", "jobId": JOB_ID}, None)
    for state in states:
        stub.add_response("describe_jobs", {"jobs": [state]}, {"jobs": [JOB_ID]})


def test_batch_program_failure_has_the_log_tail_and_no_retry(cloud: Cloud, tmp_path: Path) -> None:
    batch, logs = aws.batch_client(), aws.logs_client()
    stream = "estimator-test-job/default/abc"
    failed = batch_job(
        "FAILED", statusReason="Essential container in task exited", startedAt=1_000_000,
        stoppedAt=1_060_000,
        container={"exitCode": 3, "logStreamName": stream},
        attempts=[{"container": {"exitCode": 3, "logStreamName": stream},
                   "startedAt": 1_000_000, "stoppedAt": 1_060_000,
                   "statusReason": "Essential container in task exited"}],
    )  # fmt: skip
    with Stubber(batch) as batch_stub, Stubber(logs) as logs_stub:
        stub_batch_run(batch_stub, [batch_job("RUNNABLE"), batch_job("RUNNING"), failed])
        stub_log_tail(logs_stub, "/aws/batch/job", stream, LOG_LINES)
        record = batch_executor(client=batch, logs_client=logs).run(make_job(tmp_path), Events())
        batch_stub.assert_no_pending_responses()
    assert record.exit_code == 3
    assert "Traceback: boom" in record.error and "exit code 3" in record.error
    assert record.vcpu_seconds == 120.0  # one 60 s attempt × 2 vCPU
    strategy = retry_strategy(3)
    assert strategy["evaluateOnExit"][0] == {"onStatusReason": "Host EC2*", "action": "RETRY"}
    assert all(rule["action"] == "EXIT" for rule in strategy["evaluateOnExit"][1:])


def test_batch_lost_hosts_are_billed_per_attempt(cloud: Cloud, tmp_path: Path) -> None:
    batch, logs = aws.batch_client(), aws.logs_client()
    host_lost = "Host EC2 (instance i-0abc) terminated."
    attempts = [
        {"container": {}, "startedAt": s, "stoppedAt": s + 30_000, "statusReason": host_lost}
        for s in (1_000_000, 2_000_000, 3_000_000)
    ]
    failed = batch_job("FAILED", statusReason=host_lost, attempts=attempts)
    with Stubber(batch) as batch_stub, Stubber(logs):
        stub_batch_run(batch_stub, [failed])
        record = batch_executor(client=batch, logs_client=logs).run(make_job(tmp_path), Events())
    assert record.exit_code is None
    assert "without an exit code" in record.error and host_lost in record.error
    assert record.vcpu_seconds == 180.0  # 3 attempts × 30 s × 2 vCPU


def test_batch_interrupt_terminates_the_job(cloud: Cloud, tmp_path: Path) -> None:
    batch, logs = aws.batch_client(), aws.logs_client()
    with Stubber(batch) as batch_stub, Stubber(logs):
        stub_batch_run(batch_stub, [batch_job("RUNNING")] * 200)
        executor = batch_executor(client=batch, logs_client=logs)

        def interrupt() -> None:
            wait_for(lambda: executor.watcher().calls >= 1, what="a poll")
            signal.raise_signal(signal.SIGINT)

        in_background(interrupt)
        expected = {
            "jobId": JOB_ID,
            "reason": "survey-pipeline: worker interrupted (SIGINT)",
        }
        # The terminate call comes after the polls queued above: Stubber answers in order,
        # so check it through the request hook instead.
        seen: list[dict[str, Any]] = []
        batch.meta.events.register(
            "provide-client-params.batch.TerminateJob", lambda params, **_: seen.append(params)
        )
        with pytest.raises(Interrupted):
            executor.run(make_job(tmp_path), Events())
    assert seen == [expected]
