"""Spot first (``spot = "first"``): the first submission on Spot, every one after an
interruption on on-demand, with the same job document; checkpoints carry the work over.

ECS runs against the moto server with an agent that plays Fargate Spot: it runs the
task's container command (the real wrapper, with the task's environment) and, when the
wrapper was interrupted on the Spot capacity provider (the ``spot-interruption`` fault
point), stops the task as Fargate Spot does. moto reports exit code 0 and no stop code for
every task, so a loopback HTTP layer in front of it (``AgentFront``) gives DescribeTasks
the container's real exit code and, for an interrupted task, ``stopCode
SpotInterruption``. Batch's answers (a job that
lost its Spot host) are replayed by botocore's Stubber: moto's Batch cannot fail a job
with a status reason of our choosing."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber

from pipeline import storage
from pipeline.core.job import CAPACITY_ENV, JobDocument
from pipeline.core.spec import spec_from_dict
from pipeline.executors import Events, Job, aws
from pipeline.executors.base import ON_DEMAND, SPOT
from pipeline.executors.batch import (
    BatchExecutor,
    BatchSettings,
    retry_strategy,
    spot_retry_strategy,
)
from pipeline.executors.cloud import task_environment, task_tags, wrapper_command
from pipeline.executors.ecs import EcsExecutor
from pipeline.wrapper import IMDS_ENV, Checkpoints
from tests.cloud.conftest import (
    BUCKET,
    CLUSTER,
    CONTAINER,
    LOG_PREFIX,
    REPO,
    Cloud,
    FakeAgent,
    container_env,
    tags_of,
)
from tests.cloud.helpers import BATCH_SETTINGS, ECS_SETTINGS
from tests.cloud.test_capacity import JSON, RunTaskFront

PREFIX = f"s3://{BUCKET}/work/2026-11-22"
SPOT_PROVIDER, ON_DEMAND_PROVIDER = "test-spot", "test-on-demand"
SPOT_SETTINGS = dataclasses.replace(
    ECS_SETTINGS, spot="first", spot_capacity_provider=SPOT_PROVIDER,
    on_demand_capacity_provider=ON_DEMAND_PROVIDER,
)  # fmt: skip
# A program of STEPS steps that resumes: after each step it writes its progress (and a
# state file growing with it) to the checkpoint directory, files written then renamed.
STEPS_PROGRAM = """
import os, pathlib, sys, time
inp, out, ck, steps, pause = sys.argv[1:6]
out, steps, pause = pathlib.Path(out), int(steps), float(pause)
ck = pathlib.Path(ck) if ck != "-" else None
done = int((ck / "progress").read_text()) if ck and (ck / "progress").exists() else 0
print(f"steps program: resuming after {done} steps", flush=True)
for step in range(done, steps):
    time.sleep(pause)
    if ck:
        for name, text in (("progress", str(step + 1)), ("state", "x" * 100 * (step + 1))):
            (ck / f".{name}").write_text(text)
            os.replace(ck / f".{name}", ck / name)
    print(f"step {step + 1}", flush=True)
(out / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\\na,1,0.5,2\\n")
print(f"done: {steps - done} of {steps} steps run here", flush=True)
"""


def steps_job(tmp_path: Path, *, steps: int = 10, pause: float = 0.2, checkpoints: bool = True,
              spot: str = "first", interval: float = 3600) -> Job:  # fmt: skip
    """A job of STEPS_PROGRAM with its document, input and frame on (moto) S3."""
    program = tmp_path / "steps.py"
    program.write_text(STEPS_PROGRAM)
    ck = "{checkpoint_dir}" if checkpoints else "-"
    spec = spec_from_dict(
        {"name": "steps", "version": "1.0", "image": "toy:1.0", "timeout": 120, "spot": spot,
         "command": ["python", str(program), "{input}", "{output_dir}", ck, str(steps),
                     str(pause)],
         "outputs": {"results": "estimates.csv"}, "cpu": 2048, "memory": 4096,
         **({"checkpoint_dir": "ckpt", "checkpoint_interval": interval} if checkpoints
            else {})}
    )  # fmt: skip
    storage.write_parquet(f"{PREFIX}/cleanse/cohorts/asthma.parquet",
                          pd.DataFrame({"response_id": ["r1"], "share_a": [60.0]}))  # fmt: skip
    storage.write_bytes(f"{PREFIX}/cleanse/frame.csv", b"specialty,region\nim,kanto\n")
    base = f"{PREFIX}/model/asthma/{spec.slug}"
    attempt = "20261122T000000Z-spot01"
    document = JobDocument(
        spec=spec, run_date="2026-11-22", cohort="asthma", attempt=attempt,
        input=f"{PREFIX}/cleanse/cohorts/asthma.parquet", frame=f"{PREFIX}/cleanse/frame.csv",
        output=f"{base}/attempts/{attempt}/out", grace_seconds=5,
        checkpoint=f"{base}/checkpoint" if checkpoints else "",
    )  # fmt: skip
    job = Job(
        run_date="2026-11-22", cohort="asthma", spec=spec, attempt=attempt,
        job_uri=f"{base}/attempts/{attempt}/job.json", output_uri=document.output,
        log_path=tmp_path / "logs" / "asthma.log",
    )  # fmt: skip
    storage.write_json(job.job_uri, document.to_dict())
    return job


class SpotAgent(FakeAgent):
    """A ``FakeAgent`` that runs the container with the task's own environment (so the
    wrapper knows its capacity), plays a Fargate Spot interruption ``interrupt_after``
    seconds into a task on the Spot provider, and can make the program fail."""

    def __init__(self, cloud: Cloud, *, interrupt_after: float | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(cloud, lambda tags: True)
        self.interrupt_after, self.env = interrupt_after, env or {}
        self.providers: list[str] = []
        self.outputs: list[str] = []
        self.interrupted: set[str] = set()

    def run_task(self, task: dict[str, Any]) -> None:
        arn = task["taskArn"]
        (override,) = task["overrides"]["containerOverrides"]
        env = {**container_env(self.cloud), IMDS_ENV: "", **self.env}
        env.update({e["name"]: e["value"] for e in override.get("environment") or []})
        if self.interrupt_after is not None:
            env.update(PIPELINE_FAULT="spot-interruption",
                       PIPELINE_FAULT_AFTER=str(self.interrupt_after))  # fmt: skip
        provider = str(task.get("capacityProviderName") or "")
        self.providers.append(provider)
        proc = subprocess.run(override["command"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        self.exit_codes[arn] = proc.returncode
        self.ran.append(tags_of(task))
        self.outputs.append(proc.stdout + proc.stderr)
        lines = (proc.stdout + proc.stderr).splitlines()
        self.cloud.put_log(f"{LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}", lines)
        spot_ended = provider == SPOT_PROVIDER and "Spot interruption" in proc.stderr
        if spot_ended:
            self.interrupted.add(arn)
        reason = "Your Spot Task was interrupted." if spot_ended else "Essential container exited"
        self.cloud.ecs.stop_task(cluster=CLUSTER, task=arn, reason=reason)


class AgentFront(RunTaskFront):
    """moto behind loopback HTTP; DescribeTasks answers carry what the agent saw: the
    container's exit code, and Fargate Spot's stop code for an interrupted task."""

    def __init__(self, upstream: str, agent: SpotAgent) -> None:
        super().__init__(upstream, iter(()))
        self.agent = agent

    def handle(self, request: Any) -> None:
        if not request.headers.get("X-Amz-Target", "").endswith(".DescribeTasks"):
            super().handle(request)
            return
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            conn.request("POST", request.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
        finally:
            conn.close()
        for task in answer.get("tasks") or []:
            arn = task.get("taskArn")
            if task.get("lastStatus") == "STOPPED" and arn in self.agent.exit_codes:
                for container in task.get("containers") or []:
                    container["exitCode"] = self.agent.exit_codes[arn]
                if arn in self.agent.interrupted:
                    task["stopCode"] = "SpotInterruption"
        payload = json.dumps(answer).encode()
        request.send_response(response.status)
        request.send_header("Content-Type", JSON)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


@contextlib.contextmanager
def agent_ecs(cloud: Cloud, agent: SpotAgent) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """An ECS client whose DescribeTasks answers carry what ``agent`` saw, and the
    parameters of every RunTask it makes; the agent runs meanwhile."""
    with AgentFront(cloud.url, agent) as front:
        ecs = boto3.session.Session().client(
            "ecs", region_name="us-east-1", endpoint_url=front.url, config=aws.client_config()
        )
        requests: list[dict[str, Any]] = []
        ecs.meta.events.register(
            "provide-client-params.ecs.RunTask", lambda params, **_: requests.append(dict(params))
        )
        with agent:
            yield ecs, requests
    assert not agent.errors, agent.errors


def run_ecs(cloud: Cloud, job: Job, agent: SpotAgent) -> tuple[Any, list[dict[str, Any]]]:
    with agent_ecs(cloud, agent) as (ecs, requests):
        record = EcsExecutor(SPOT_SETTINGS, client=ecs).run(job, Events())
    return record, requests


def provider(request: dict[str, Any]) -> str:
    return request["capacityProviderStrategy"][0]["capacityProvider"]


def test_an_interruption_is_resubmitted_on_demand_with_the_same_job_document(
    cloud: Cloud, tmp_path: Path
) -> None:
    job = steps_job(tmp_path, steps=12, pause=0.25)
    agent = SpotAgent(cloud, interrupt_after=1.5)
    record, requests = run_ecs(cloud, job, agent)

    assert record.exit_code == 0 and record.capacity == ON_DEMAND
    (abandoned,) = record.interrupted
    assert abandoned.capacity == SPOT and abandoned.exit_code != 0
    assert abandoned.interruption == "SpotInterruption: Your Spot Task was interrupted."
    assert abandoned.vcpu_seconds > 0 and abandoned.cost_usd > 0
    # The Spot price for the Spot submission (luigi.cfg: 70 % below on-demand).
    assert abandoned.cost_usd < abandoned.vcpu_seconds / 3600 * 0.04048
    assert [provider(r) for r in requests] == [SPOT_PROVIDER, ON_DEMAND_PROVIDER]
    one, two = requests
    assert one["overrides"]["containerOverrides"][0]["command"] == two["overrides"][
        "containerOverrides"][0]["command"]  # fmt: skip
    assert one["overrides"]["containerOverrides"][0]["command"][-1] == job.job_uri
    envs = [{e["name"]: e["value"] for e in r["overrides"]["containerOverrides"][0]
             ["environment"]} for r in requests]  # fmt: skip
    assert [e[CAPACITY_ENV] for e in envs] == [SPOT, ON_DEMAND]
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in requests]
    assert [(t["capacity"], t["submission"]) for t in tags] == [(SPOT, "1"), (ON_DEMAND, "2")]
    # The second submission resumed from the checkpoint the first one saved on SIGTERM.
    first_out, second_out = agent.outputs
    assert "checkpoint" in first_out and "saved (stopped: Spot interruption" in first_out
    assert "restored checkpoint" in second_out
    done_first = int(first_out.split("resuming after ")[1].split()[0])
    resumed_at = int(second_out.split("resuming after ")[1].split()[0])
    assert done_first == 0 and 0 < resumed_at < 12
    assert f"done: {12 - resumed_at} of 12 steps run here" in second_out
    manifest = storage.read_json(f"{job.output_uri}/manifest.json")
    assert manifest["capacity"] == ON_DEMAND and manifest["checkpoint"]["restored"]
    assert "ckpt/progress" not in manifest["outputs"]  # the checkpoint has its own store


def test_a_restart_submits_again_when_its_reattached_spot_task_is_interrupted(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The orchestrator that submitted a Spot task died, its restart re-attached to the
    task, and then Spot reclaimed it. The restart submits the job again on on-demand,
    counting on from the re-attached submission, as the killed run would have (until
    2026-12-06 the cohort failed, as if its program had)."""
    job = steps_job(tmp_path, steps=12, pause=0.25)
    agent = SpotAgent(cloud, interrupt_after=1.5)
    # What the killed orchestrator's first submission left: its tags and environment.
    deadline = time.time() + 3600
    tags = {**task_tags(job, lease_id="killed-1", lease_root=cloud.root, deadline=deadline),
            "capacity": SPOT}  # fmt: skip
    env = {**task_environment(job), CAPACITY_ENV: SPOT}
    with agent_ecs(cloud, agent) as (ecs, requests):
        killed = EcsExecutor(SPOT_SETTINGS, client=ecs)
        task_id = killed.submit(job, wrapper_command(job), env, tags, deadline, capacity=SPOT)
        record = EcsExecutor(SPOT_SETTINGS, client=ecs).reattach(job, task_id, tags, Events())

    assert record.exit_code == 0 and record.capacity == ON_DEMAND
    (abandoned,) = record.interrupted
    assert abandoned.job_id == task_id and abandoned.capacity == SPOT
    assert abandoned.interruption == "SpotInterruption: Your Spot Task was interrupted."
    assert [provider(r) for r in requests] == [SPOT_PROVIDER, ON_DEMAND_PROVIDER]
    again = {t["key"]: t["value"] for t in requests[1]["tags"]}
    assert again["submission"] == "2" and again["capacity"] == ON_DEMAND
    assert again["lease"] not in ("", "killed-1")  # the restart's own lease
    assert "restored checkpoint" in agent.outputs[1]
    log = job.log_path.read_text()
    assert f"re-attached to {task_id}" in log and "submitting the same job again (2 of 3)" in log


def test_without_checkpoints_one_spot_attempt_then_one_on_demand_attempt(
    cloud: Cloud, tmp_path: Path
) -> None:
    job = steps_job(tmp_path, steps=8, pause=0.2, checkpoints=False)
    agent = SpotAgent(cloud, interrupt_after=1.0)
    record, requests = run_ecs(cloud, job, agent)
    assert record.exit_code == 0
    assert [provider(r) for r in requests] == [SPOT_PROVIDER, ON_DEMAND_PROVIDER]
    assert [r.capacity for r in [*record.interrupted, record]] == [SPOT, ON_DEMAND]
    assert "done: 8 of 8 steps run here" in agent.outputs[1]  # from the beginning


def test_a_program_failure_on_spot_is_not_retried(cloud: Cloud, tmp_path: Path) -> None:
    job = steps_job(tmp_path, steps=2, pause=0.05)
    broken = dataclasses.replace(job.spec, command=("python", "-c", "import sys; sys.exit(3)"))
    job = dataclasses.replace(job, spec=broken)
    document = storage.read_json(job.job_uri)
    document["spec"]["command"] = list(broken.command)
    storage.write_json(job.job_uri, document)
    agent = SpotAgent(cloud)
    record, requests = run_ecs(cloud, job, agent)
    assert list(agent.exit_codes.values()) == [3] and record.exit_code == 3
    assert len(requests) == 1 and provider(requests[0]) == SPOT_PROVIDER
    assert record.interrupted == [] and record.capacity == SPOT


def test_the_checkpoint_survives_a_kill_during_its_upload(cloud: Cloud, tmp_path: Path) -> None:
    """SIGTERM (Fargate Spot's notice), then the final upload is cut short (SIGKILL after
    its first file, the fault point): the pointer still names the complete checkpoint
    before it, and that one is what the next attempt restores."""
    job = steps_job(tmp_path, steps=200, pause=0.05)
    store = storage.read_json(job.job_uri)["checkpoint"]
    complete = tmp_path / "complete"
    complete.mkdir()
    (complete / "progress").write_text("3")
    (complete / "state").write_text("x" * 300)
    inputs = _input_sums()
    Checkpoints(store, complete, attempt="earlier", inputs=inputs, interval=60).save("test")

    env = {**container_env(cloud), IMDS_ENV: "", CAPACITY_ENV: SPOT,
           "PIPELINE_FAULT": "wrapper.checkpoint-upload"}  # fmt: skip
    proc = subprocess.Popen(
        ["python", "-m", "pipeline.wrapper", "--job", job.job_uri], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    time.sleep(2.5)  # restored step 3, then a few more steps
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, err  # killed mid-upload
    assert "restored checkpoint" in err and "received SIGTERM" in err

    pointer = storage.read_json(f"{store}/checkpoint.json")
    assert pointer["attempt"] == "earlier"
    restored = tmp_path / "restored"
    again = Checkpoints(store, restored, attempt="next", inputs=inputs, interval=60)
    assert again.restore() is not None
    assert (restored / "progress").read_text() == "3"
    assert (restored / "state").read_text() == "x" * 300
    # The cut-short generation left one file, which no pointer names.
    partial = [u for u in storage.listdir(f"{store}/generations")
               if pointer["generation"] not in u]  # fmt: skip
    assert len(partial) == 1 and partial[0].endswith("/progress")


def _input_sums() -> dict[str, str]:
    return {
        "input": hashlib.sha256(
            storage.read_bytes(f"{PREFIX}/cleanse/cohorts/asthma.parquet")
        ).hexdigest(),
        "frame": hashlib.sha256(storage.read_bytes(f"{PREFIX}/cleanse/frame.csv")).hexdigest(),
    }


def test_checkpoints_of_other_inputs_are_not_restored(cloud: Cloud, tmp_path: Path) -> None:
    store = f"{PREFIX}/model/asthma/x/checkpoint"
    local = tmp_path / "ck"
    local.mkdir()
    (local / "progress").write_text("5")
    saver = Checkpoints(store, local, attempt="a", inputs={"input": "1", "frame": "2"},
                        interval=60)  # fmt: skip
    assert saver.save("test") and not saver.save("unchanged")  # nothing new: no upload
    other = Checkpoints(store, tmp_path / "other", attempt="b",
                        inputs={"input": "changed", "frame": "2"}, interval=60)  # fmt: skip
    assert other.restore() is None and list((tmp_path / "other").iterdir()) == []


# -- Batch: the Spot queue first, the on-demand queue after a lost Spot host -----------
@pytest.mark.parametrize("restarted", [False, True], ids=["submitted", "re-attached"])
def test_batch_lost_spot_host_is_resubmitted_to_the_on_demand_queue(
    cloud: Cloud, tmp_path: Path, restarted: bool
) -> None:
    """Also when the Spot job was submitted by a killed run and re-attached by its restart:
    the restart submits the on-demand job the killed run would have."""
    settings = dataclasses.replace(BATCH_SETTINGS, spot="first", spot_job_queue="spot-queue")
    batch, logs = aws.batch_client(), aws.logs_client()
    sent: list[dict[str, Any]] = []
    batch.meta.events.register(
        "provide-client-params.batch.SubmitJob", lambda params, **_: sent.append(dict(params))
    )
    job = steps_job(tmp_path, checkpoints=False)
    lost = {"statusReason": "Host EC2 (instance i-0abc) terminated.",
            "startedAt": 1_000_000, "stoppedAt": 1_060_000}  # fmt: skip
    with Stubber(batch) as stub, Stubber(logs):
        done = {"startedAt": 1_100_000, "stoppedAt": 1_130_000}
        for job_id, status, attempt in (("j-spot", "FAILED", lost), ("j-od", "SUCCEEDED", done)):
            if job_id == "j-od" or not restarted:
                stub.add_response("submit_job", {"jobName": "steps", "jobId": job_id}, None)
            stub.add_response("describe_jobs", {"jobs": [{
                "jobName": "steps", "jobId": job_id, "jobQueue": "q", "status": status,
                "jobDefinition": "d", "startedAt": 1, "attempts": [attempt],
                "statusReason": attempt.get("statusReason", "Essential container exited"),
                "container": {"exitCode": 0} if status == "SUCCEEDED" else {}}]},
                {"jobs": [job_id]})  # fmt: skip
        executor = BatchExecutor(settings, client=batch, logs_client=logs)
        executor._definitions[job.spec.image] = "d"  # the image's definition is known
        if restarted:  # the tags the killed run's Spot submission carries
            tags = {**task_tags(job, lease_id="killed-1", lease_root=cloud.root,
                                deadline=time.time() + 3600), "capacity": SPOT}  # fmt: skip
            record = executor.reattach(job, "j-spot", tags, Events())
        else:
            record = executor.run(job, Events())
        stub.assert_no_pending_responses()
    queues = [s["jobQueue"] for s in sent]
    assert queues == ([] if restarted else ["spot-queue"]) + [BATCH_SETTINGS.job_queue]
    assert sent[-1]["retryStrategy"] == retry_strategy(BATCH_SETTINGS.attempts)
    assert sent[-1]["tags"]["submission"] == "2"
    if not restarted:
        assert sent[0]["retryStrategy"] == spot_retry_strategy()
        assert sent[0]["containerOverrides"]["command"] == sent[1]["containerOverrides"]["command"]
    assert record.exit_code == 0 and record.capacity == ON_DEMAND
    (abandoned,) = record.interrupted
    assert abandoned.job_id == "j-spot" and abandoned.capacity == SPOT
    assert abandoned.interruption.startswith("Host EC2")
    assert abandoned.vcpu_seconds == 120.0  # 60 s billed x 2 vCPU


def test_batch_program_failure_on_spot_is_not_resubmitted(cloud: Cloud, tmp_path: Path) -> None:
    settings = dataclasses.replace(BATCH_SETTINGS, spot="first", spot_job_queue="spot-queue")
    batch = aws.batch_client()
    job = steps_job(tmp_path, checkpoints=False)
    with Stubber(batch) as stub:
        stub.add_response("submit_job", {"jobName": "steps", "jobId": "j-1"}, None)
        stub.add_response("describe_jobs", {"jobs": [{
            "jobName": "steps", "jobId": "j-1", "jobQueue": "q", "status": "FAILED",
            "jobDefinition": "d", "startedAt": 1, "statusReason": "Essential container in "
            "task exited", "container": {"exitCode": 3},
            "attempts": [{"startedAt": 1_000_000, "stoppedAt": 1_010_000,
                          "container": {"exitCode": 3}}]}]}, {"jobs": ANY})  # fmt: skip
        executor = BatchExecutor(settings, client=batch, logs_client=object())
        executor._definitions[job.spec.image] = "d"
        record = executor.run(job, Events())
        stub.assert_no_pending_responses()
    assert record.exit_code == 3 and record.interrupted == [] and record.capacity == SPOT


def test_the_reaper_and_a_restart_list_both_batch_queues(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spot first's jobs live in the Spot queue: the reaper (``[batch] spot_job_queue`` or
    ``$PIPELINE_BATCH_SPOT_JOB_QUEUE``) and ``BatchExecutor.running`` list it too."""
    from pipeline.executors import reaper

    listed: list[str] = []

    class Pages:
        def paginate(self, jobQueue: str, jobStatus: str) -> list[dict[str, Any]]:
            listed.append(jobQueue)
            return [{"jobSummaryList": []}]

    class Client:
        def get_paginator(self, _name: str) -> Pages:
            return Pages()

    report = reaper.ReapReport()
    reaper._list_candidates(None, "", Client(), "od-queue, spot-queue", report)
    assert sorted(set(listed)) == ["od-queue", "spot-queue"] and report.errors == []
    monkeypatch.setenv("PIPELINE_BATCH_SPOT_JOB_QUEUE", "env-spot-queue")
    settings = BatchSettings.from_config()
    assert settings.queues() == [settings.job_queue, "env-spot-queue"]
    listed.clear()
    BatchExecutor(settings, client=Client(), logs_client=object()).running()
    assert sorted(set(listed)) == sorted({settings.job_queue, "env-spot-queue"})
