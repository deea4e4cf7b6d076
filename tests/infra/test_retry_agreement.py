"""The Batch job definition Terraform creates retries exactly what the executor retries.

A job submitted without the executor's override (by hand, by another tool) gets the job
definition's retry strategy; a job the executor submits gets ``retry_strategy(...)``. If the
two differ, the same failure is retried in one case and final in the other. The same holds
for Spot first: the Spot job definition's rules (one attempt, every ending final) are
what the executor sends with a Spot submission, which goes to the Spot queue Terraform
makes, so that a lost Spot host comes back to the executor for an on-demand
resubmission. The HCL is read with python-hcl2; the executor's request is the real
``SubmitJob`` a botocore client would send (validated against the service model, answered
by a Stubber)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipeline.core.spec import spec_from_dict
from pipeline.executors import Job
from pipeline.executors.base import ON_DEMAND, SPOT
from pipeline.executors.batch import BatchExecutor, BatchSettings
from tests.infra.test_terraform_wiring import worker_environment
from tests.infra.tf import REPO, Module, env_scope, luigi_cfg

BATCH = Module(REPO / "terraform" / "modules" / "batch")
HCL_TO_API = {
    "on_status_reason": "onStatusReason",
    "on_exit_code": "onExitCode",
    "on_reason": "onReason",
    "action": "action",
}


def terraform_retry_strategy(module: Module, attempts: Any, name: str = "this") -> dict[str, Any]:
    """The job definition's retry_strategy block in SubmitJob's shape."""
    (block,) = module.resource("aws_batch_job_definition", name)["retry_strategy"]
    return {
        "attempts": attempts,
        "evaluateOnExit": [
            {HCL_TO_API[key]: str(value) for key, value in rule.items()}
            for rule in block["evaluate_on_exit"]
        ],
    }


def terraform_attempts(env: str) -> int:
    """retry_attempts of the batch module as the stack ``env`` instantiates it."""
    scope = env_scope(env).call("platform").call("batch")
    block = scope.module.resource("aws_batch_job_definition")["retry_strategy"][0]
    return int(scope.resolve(block["attempts"]))


def submitted_request(
    tmp_path: Path, settings: BatchSettings, capacity: str = ""
) -> dict[str, Any]:
    """The SubmitJob request the executor sends for one job (``capacity`` as under
    ``spot = "first"``)."""
    client = boto3.session.Session().client(
        "batch", region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:1",
    )  # fmt: skip
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.batch.SubmitJob", lambda params, **_: sent.append(dict(params))
    )
    spec = spec_from_dict(
        {"name": "toy", "version": "1.0", "command": ["true"], "timeout": 600,
         "outputs": {"results": "r.csv"}}
    )  # fmt: skip
    job = Job(
        run_date="2026-11-22", cohort="asthma", spec=spec, attempt="a1",
        job_uri="s3://b/job.json", output_uri="s3://b/out", log_path=tmp_path / "log",
    )  # fmt: skip
    executor = BatchExecutor(settings, client=client, logs_client=object())
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobName": "toy", "jobId": "j-1"})
        executor.submit(job, ["python"], {}, {"pipeline": "survey-pipeline"}, 0.0,
                        capacity=capacity)  # fmt: skip
        stub.assert_no_pending_responses()
    (params,) = sent
    return params


def submitted_retry_strategy(
    tmp_path: Path, settings: BatchSettings, capacity: str = ""
) -> dict[str, Any]:
    """retryStrategy of the SubmitJob request the executor sends for one job."""
    return submitted_request(tmp_path, settings, capacity)["retryStrategy"]


@pytest.mark.parametrize("env", ["prod", "staging", "branch"])
def test_job_definition_retries_what_the_executor_retries(tmp_path: Path, env: str) -> None:
    settings = BatchSettings.from_config()
    assert settings.attempts == luigi_cfg().getint("batch", "attempts")
    submitted = submitted_retry_strategy(tmp_path, settings)
    assert submitted["evaluateOnExit"][0] == {"onStatusReason": "Host EC2*", "action": "RETRY"}
    deployed = terraform_retry_strategy(BATCH, terraform_attempts(env))
    assert deployed == submitted, (
        "terraform/modules/batch's retry_strategy differs from pipeline/executors/batch.py "
        f"retry_strategy() with [batch] attempts: {deployed} != {submitted}"
    )


def test_the_comparison_catches_a_missing_exit_code_rule(tmp_path: Path) -> None:
    """What the job definition looked like before: no onExitCode "*" rule."""
    submitted = submitted_retry_strategy(tmp_path, BatchSettings.from_config())
    deployed = terraform_retry_strategy(BATCH, 3)
    without = {**deployed, "evaluateOnExit": [r for r in deployed["evaluateOnExit"]
                                              if "onExitCode" not in r]}  # fmt: skip
    assert without != submitted
    assert {**deployed, "attempts": 4} != submitted


SPOT_SETTINGS = dataclasses.replace(
    BatchSettings.from_config(), spot="first", spot_job_queue="survey-pipeline-spot"
)


def test_spot_job_definition_leaves_resubmission_to_the_executor(tmp_path: Path) -> None:
    submitted = submitted_retry_strategy(tmp_path, SPOT_SETTINGS, capacity=SPOT)
    (block,) = BATCH.resource("aws_batch_job_definition", "spot")["retry_strategy"]
    deployed = terraform_retry_strategy(BATCH, int(block["attempts"]), name="spot")
    assert deployed == submitted, (
        "terraform/modules/batch's Spot job definition retries differently from "
        f"pipeline/executors/batch.py spot_retry_strategy(): {deployed} != {submitted}"
    )
    # Nothing is retried on Spot: a lost Spot host ends the job (the executor resubmits).
    assert submitted["attempts"] == 1
    assert submitted["evaluateOnExit"][0] == {"onStatusReason": "Host EC2*", "action": "EXIT"}
    # The on-demand submission after it keeps the on-demand rules (lost hosts retried).
    on_demand = submitted_retry_strategy(tmp_path, SPOT_SETTINGS, capacity=ON_DEMAND)
    assert on_demand == terraform_retry_strategy(BATCH, SPOT_SETTINGS.attempts)


@pytest.mark.parametrize("env", ["prod", "branch"])
def test_both_queues_exist_and_the_worker_submits_to_them(tmp_path: Path, env: str) -> None:
    spot = BATCH.resource("aws_batch_job_queue", "spot")
    on_demand = BATCH.resource("aws_batch_job_queue", "this")
    assert spot["name"] == "${var.job_queue_name}-spot"
    assert on_demand["name"] == "${var.job_queue_name}"
    assert spot["compute_environment_order"][0]["compute_environment"] == (
        "${aws_batch_compute_environment.spot.arn}"
    )
    ce = BATCH.resource("aws_batch_compute_environment", "spot")["compute_resources"][0]
    assert ce["type"] == "SPOT" and (ce["min_vcpus"], ce["desired_vcpus"]) == (0, 0)
    assert 'var.use_spot ? "SPOT" : "EC2"' in str(
        BATCH.resource("aws_batch_compute_environment", "this")["compute_resources"][0]["type"]
    )
    environment = worker_environment()
    assert environment["PIPELINE_BATCH_SPOT_JOB_QUEUE"] == "${module.batch.spot_job_queue_name}"
    assert environment["PIPELINE_BATCH_SPOT"] == '${var.spot_first ? "first" : "never"}'
    assert environment["PIPELINE_ECS_SPOT"] == '${var.spot_first ? "first" : "never"}'
    # The executor's Spot submission goes to the queue named like Terraform's.
    scope = env_scope(env).call("platform").call("batch")
    queue = scope.resolve(spot["name"])
    request = submitted_request(
        tmp_path, dataclasses.replace(SPOT_SETTINGS, spot_job_queue=queue), capacity=SPOT
    )
    assert request["jobQueue"] == queue == f"{scope.resolve('${var.job_queue_name}')}-spot"
