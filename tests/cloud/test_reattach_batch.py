"""Re-attaching to a Batch job a killed orchestrator left running.

moto's Docker-less Batch finishes every job inside ``SubmitJob``, so a job that is still
RUNNING is played by a botocore Stubber (as in test_states.py); the lease is real, on
moto's S3. The whole-delivery version of this test runs on ECS (test_reattach.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from pipeline import storage
from pipeline.executors import Events, aws, lease
from pipeline.executors.batch import ACTIVE_STATUSES
from pipeline.layout import LEASE_DIR, lease_uri
from tests.cloud.conftest import BUCKET, QUEUE, Cloud
from tests.cloud.helpers import batch_executor, make_job
from tests.cloud.test_states import JOB_ID, batch_job


def test_batch_job_is_found_by_its_tags_and_taken_over(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(tmp_path)
    root = f"s3://{BUCKET}/work"
    old_lease = "deadhost-1234-abcdef"
    tags = {
        "pipeline": "survey-pipeline", "run_date": job.run_date, "cohort": job.cohort,
        "program": "toy-1.0", "spec": job.spec.fingerprint, "attempt": job.attempt,
        "lease": old_lease, "lease_store": root, "deadline": "4102444800",
    }  # fmt: skip
    other = {**tags, "cohort": "diabetes"}
    written: list[dict[str, Any]] = []
    real_write = lease.LeaseStore.write
    monkeypatch.setattr(
        lease.LeaseStore, "write",
        lambda self, uri, doc: (written.append({"uri": uri, **doc}), real_write(self, uri, doc)),
    )  # fmt: skip
    batch = aws.batch_client()
    with Stubber(batch) as stub, Stubber(aws.logs_client()) as _logs:
        for status in ACTIVE_STATUSES:
            jobs = [{"jobId": JOB_ID, "jobName": "toy"}] if status == "RUNNING" else []
            stub.add_response("list_jobs", {"jobSummaryList": jobs},
                              {"jobQueue": QUEUE, "jobStatus": status})  # fmt: skip
        stub.add_response(
            "describe_jobs",
            {"jobs": [batch_job("RUNNING", tags=tags),
                      {**batch_job("RUNNING", tags=other), "jobId": "other"}]},
            {"jobs": [JOB_ID]},
        )  # fmt: skip
        executor = batch_executor(client=batch, logs_client=_logs.client)
        found = executor.find_running(job.run_date, job.cohort, job.spec)
        assert found == (JOB_ID, tags)
        # Another spec (a changed program) is not taken over.
        changed = dataclasses.replace(job.spec, version="2.0")
        assert executor.find_running(job.run_date, job.cohort, changed) == ("", {})

        stub.add_response("describe_jobs", {"jobs": [batch_job("RUNNING", tags=tags)]},
                          {"jobs": [JOB_ID]})  # fmt: skip
        stub.add_response("describe_jobs", {"jobs": [batch_job("SUCCEEDED", tags=tags)]},
                          {"jobs": [JOB_ID]})  # fmt: skip
        record = executor.reattach(job, JOB_ID, tags, Events())  # no submit_job stubbed
        stub.assert_no_pending_responses()
    assert record.exit_code == 0 and record.job_id == JOB_ID and record.attempt == job.attempt
    adopted = [w for w in written if w["uri"].endswith(f"/{old_lease}.json")]
    assert adopted and all(w["adopted_by"] and w["lease"] == old_lease for w in adopted)
    # Ours went with its last task; the adopted one stays until this process ends: other
    # tasks of the dead worker may carry it and not be re-attached yet.
    assert storage.listdir(f"{root}/{LEASE_DIR}") == [lease_uri(root, old_lease)]
    lease.close_keepers()  # what exit does
    assert storage.listdir(f"{root}/{LEASE_DIR}") == []
    assert f"re-attached to {JOB_ID}" in job.log_path.read_text()
