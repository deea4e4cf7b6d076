"""The Batch executor against moto (its Docker-less Batch completes jobs at once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.executors import Events
from tests.cloud.conftest import Cloud
from tests.cloud.helpers import batch_executor, make_job


def test_submits_the_wrapper_with_timeout_retries_and_tags(cloud: Cloud, tmp_path: Path) -> None:
    executor = batch_executor()
    seen: list[dict[str, Any]] = []
    executor.client.meta.events.register(
        "provide-client-params.batch.SubmitJob", lambda params, **_: seen.append(dict(params))
    )
    job = make_job(tmp_path, timeout=3600)
    urls: list[str] = []
    record = executor.run(job, Events(tracking_url=urls.append))
    assert record.exit_code == 0 and record.error == ""
    (params,) = seen
    command = ["python", "-m", "pipeline.wrapper", "--job", job.job_uri]
    assert params["containerOverrides"]["command"] == command
    assert params["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"},
    ]  # fmt: skip
    assert params["timeout"] == {"attemptDurationSeconds": 3600 + 300}
    assert params["retryStrategy"] == {
        "attempts": 3,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onExitCode": "*", "action": "EXIT"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }
    assert params["jobName"] == f"toy-asthma-{job.attempt}"
    (described,) = cloud.batch.describe_jobs(jobs=[record.job_id])["jobs"]
    assert described["container"]["command"] == command
    tags = described["tags"]
    assert (tags["pipeline"], tags["run_date"], tags["cohort"]) == (
        "survey-pipeline", "2026-11-22", "asthma",
    )  # fmt: skip
    assert tags["lease"] and int(tags["deadline"]) > 0
    assert urls == [record.tracking_url] and f"#jobs/detail/{record.job_id}" in urls[0]
    assert record.host == "queue survey-test-queue"
    assert "[batch]" in job.log_path.read_text()
