"""The Batch job definition Terraform creates retries exactly what the executor retries.

A job submitted without the executor's override (by hand, by another tool) gets the job
definition's retry strategy; a job the executor submits gets ``retry_strategy(...)``. If the
two differ, the same failure is retried in one case and final in the other. The HCL is read
with python-hcl2; the executor's request is the real ``SubmitJob`` a botocore client would
send (validated against the service model, answered by a Stubber)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipeline.core.spec import spec_from_dict
from pipeline.executors import Job
from pipeline.executors.batch import BatchExecutor, BatchSettings
from tests.infra.tf import REPO, Module, env_scope, luigi_cfg

BATCH = Module(REPO / "terraform" / "modules" / "batch")
HCL_TO_API = {
    "on_status_reason": "onStatusReason",
    "on_exit_code": "onExitCode",
    "on_reason": "onReason",
    "action": "action",
}


def terraform_retry_strategy(module: Module, attempts: Any) -> dict[str, Any]:
    """The job definition's retry_strategy block in SubmitJob's shape."""
    (block,) = module.resource("aws_batch_job_definition")["retry_strategy"]
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


def submitted_retry_strategy(tmp_path: Path, settings: BatchSettings) -> dict[str, Any]:
    """retryStrategy of the SubmitJob request the executor sends for one job."""
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
        executor.submit(job, ["python"], {}, {"pipeline": "survey-pipeline"}, 0.0)
        stub.assert_no_pending_responses()
    (params,) = sent
    return params["retryStrategy"]


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
