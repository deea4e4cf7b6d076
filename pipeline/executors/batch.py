"""The AWS Batch executor: one ``SubmitJob`` per cohort, watched until it ends.

Settings come from luigi.cfg ``[batch]``: ``job_queue``, ``job_definition``,
``attempts`` (retries of infrastructure failures only), ``timeout_grace`` (seconds added
to the spec's timeout for ``attemptDurationSeconds``), ``log_group`` (default
``/aws/batch/job``), ``poll_interval``/``poll_max_interval`` and ``log_lines``.

Retries: Batch retries an attempt whose status reason starts with ``Host EC2`` (the
instance went away, e.g. a Spot reclamation) and never one that ended with an exit code
of the program's own: the first matching ``evaluateOnExit`` rule wins, and every exit
code or reason that is not a lost host means ``EXIT``. Batch does the retrying, so the
executor submits each job once (``CloudExecutor.max_submissions`` = 1).

Spot first (``spot = "first"``, the spec's or ``[batch] spot``): the first submission goes
to ``[batch] spot_job_queue`` with ``spot_retry_strategy()`` (one attempt: Batch retries
nothing), and a job that lost its Spot host (``Host EC2*``) is submitted again, the same
job document, to ``[batch] job_queue`` (on-demand), where Batch retries lost hosts as
above. The reaper and a restart list both queues.

The image: when the program spec names an ``image`` other than the configured job
definition's, the job runs a job definition derived from the configured one with the
spec's image, registered on demand as ``<name>-<12 hex of sha256(image)>`` (the configured
name's latest revision never changes), looked up first and reused, cached per process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.executors import aws
from pipeline.executors.base import SPOT, Candidate, Job, spot_setting
from pipeline.executors.cloud import CloudError, CloudExecutor, TaskState

log = logging.getLogger("pipeline.executors.batch")

ACTIVE_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
DONE_STATUSES = ("SUCCEEDED", "FAILED")
# Fields of a DescribeJobDefinitions answer that RegisterJobDefinition takes back.
REGISTRABLE = (
    "type", "parameters", "schedulingPriority", "retryStrategy", "propagateTags", "timeout",
    "platformCapabilities", "containerProperties", "nodeProperties", "eksProperties",
    "ecsProperties",
)  # fmt: skip


def retry_strategy(attempts: int) -> dict[str, Any]:
    """Retry lost hosts (``Host EC2*``), exit on anything else (first match wins)."""
    return {
        "attempts": max(1, min(10, attempts)),
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onExitCode": "*", "action": "EXIT"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }


def spot_retry_strategy() -> dict[str, Any]:
    """A Spot submission under ``spot = "first"``: one attempt, every ending final, so a
    lost Spot host comes back to the executor, which submits the job to the on-demand
    queue (the rules say so for whoever reads the job; with one attempt Batch retries
    nothing either way)."""
    return {
        "attempts": 1,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "EXIT"},
            {"onExitCode": "*", "action": "EXIT"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }


# Status reason prefixes of a job the infrastructure ended: its instance went away (a Spot
# reclamation, a lost host), or the queue cancelled it for want of capacity (the Spot
# queue's job_state_time_limit_action, terraform/modules/batch).
LOST_HOST = "Host EC2"
NO_CAPACITY = "CAPACITY:"


def spot_job_queue() -> str:
    """``[batch] spot_job_queue``, or ``$PIPELINE_BATCH_SPOT_JOB_QUEUE`` when set (the
    stack's worker gets the Spot queue Terraform made)."""
    return os.environ.get("PIPELINE_BATCH_SPOT_JOB_QUEUE") or config.get("batch", "spot_job_queue")


@dataclass(frozen=True)
class BatchSettings:
    job_queue: str = "survey-pipeline"
    job_definition: str = "survey-pipeline-estimator"
    attempts: int = 3
    timeout_grace: float = 300.0
    log_group: str = "/aws/batch/job"
    poll_interval: float = 5.0
    poll_max_interval: float = 30.0
    log_lines: int = 200
    spot: str = ""  # "first": the first submission on spot_job_queue (docs/executors.md)
    spot_job_queue: str = ""  # the Spot queue ("" = none: spot = "first" is refused)

    def queues(self) -> list[str]:
        """Every queue the executor submits to: what the reaper and a restart list."""
        return [q for q in (self.job_queue, self.spot_job_queue) if q]

    @classmethod
    def from_config(cls) -> BatchSettings:
        """The ``[batch]`` section of luigi.cfg."""
        return cls(
            spot=spot_setting("batch"),
            spot_job_queue=spot_job_queue(),
            job_queue=config.get("batch", "job_queue", cls.job_queue),
            job_definition=config.get("batch", "job_definition", cls.job_definition),
            attempts=int(config.get_float("batch", "attempts", cls.attempts)),
            timeout_grace=config.get_float("batch", "timeout_grace", cls.timeout_grace),
            log_group=config.get("batch", "log_group", cls.log_group) or cls.log_group,
            poll_interval=config.get_float("batch", "poll_interval", cls.poll_interval),
            poll_max_interval=config.get_float("batch", "poll_max_interval", cls.poll_max_interval),
            log_lines=int(config.get_float("batch", "log_lines", cls.log_lines)),
        )


def _seconds(ms: Any) -> float | None:
    return float(ms) / 1000.0 if isinstance(ms, int | float) and ms > 0 else None


def job_state(job: dict[str, Any], default_log_group: str) -> TaskState:
    """A ``DescribeJobs`` job as a ``TaskState``: the last attempt's exit code, status
    reason and log stream, and the seconds every attempt ran (what was billed)."""
    status = str(job.get("status", "UNKNOWN"))
    done = status in DONE_STATUSES
    container = job.get("container") or {}
    attempts = job.get("attempts") or []
    last_attempt = attempts[-1] if attempts else {}
    last = last_attempt.get("container") or {}
    exit_code = container.get("exitCode", last.get("exitCode"))
    if done and exit_code is None and status == "SUCCEEDED":
        exit_code = 0
    reasons = []
    for part in (
        job.get("statusReason"),
        last_attempt.get("statusReason"),
        container.get("reason") or last.get("reason"),
    ):
        if part and part not in reasons:
            reasons.append(str(part))
    options = (container.get("logConfiguration") or {}).get("options") or {}
    started = [_seconds(a.get("startedAt")) for a in attempts]
    stopped = [_seconds(a.get("stoppedAt")) for a in attempts]
    runs = [(a, b) for a, b in zip(started, stopped, strict=True) if a and b]
    billed = sum(b - a for a, b in runs) if runs else None
    # A job that failed because its instance went away (a Spot reclamation, a lost host):
    # the infrastructure ended it, not the program.
    lost = [str(r) for r in (last_attempt.get("statusReason"), job.get("statusReason")) if r]
    interruption = next((r for r in lost if r.startswith((LOST_HOST, NO_CAPACITY))), "")
    return TaskState(
        id=str(job["jobId"]),
        status=status,
        done=done,
        exit_code=int(exit_code) if done and exit_code is not None else None,
        reason="; ".join(reasons),
        log_stream=str(container.get("logStreamName") or last.get("logStreamName") or ""),
        log_group=str(options.get("awslogs-group") or default_log_group),
        image=str(container.get("image") or ""),
        started_at=_seconds(job.get("startedAt")),
        stopped_at=_seconds(job.get("stoppedAt")),
        billed_seconds=billed,
        interruption=interruption if status == "FAILED" else "",
    )


def list_pipeline_jobs(client: Any, queue: str) -> Iterator[Candidate]:
    """Every pipeline job of ``queue`` in an active status (``ACTIVE_STATUSES``: queued or
    running), tagged ``aws.PIPELINE_TAG``; described 100 at a time. What the reaper judges
    and a restart re-attaches to."""
    ids: list[str] = []
    for status in ACTIVE_STATUSES:
        for page in client.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status):
            ids.extend(str(j["jobId"]) for j in page.get("jobSummaryList") or [])
    key, value = aws.PIPELINE_TAG
    for chunk in aws.chunks(sorted(set(ids))):
        response = aws.with_backoff(
            lambda c=chunk: client.describe_jobs(jobs=c), retry_if=aws.is_transient
        )
        for job in response.get("jobs") or []:
            tags = aws.tag_dict(job.get("tags"))
            if tags.get(key) == value and job.get("status") in ACTIVE_STATUSES:
                yield Candidate("batch", str(job["jobId"]), tags)


class BatchExecutor(CloudExecutor):
    """Runs each cohort as one AWS Batch job of ``[batch] job_definition`` on
    ``[batch] job_queue``; see ``CloudExecutor`` for watching, stopping and records."""

    name = "batch"

    def __init__(self, settings: BatchSettings | None = None, *, client: Any = None,
                 logs_client: Any = None) -> None:  # fmt: skip
        self.settings = settings or BatchSettings.from_config()
        super().__init__(
            poll_interval=self.settings.poll_interval,
            poll_max_interval=self.settings.poll_max_interval,
            log_lines=self.settings.log_lines,
        )
        self.client = client if client is not None else aws.batch_client()
        self._logs = logs_client
        # spec image => job definition ARN that runs it (see EcsExecutor for the locking).
        self._configured: dict[str, Any] | None = None
        self.registrations = 0  # job definitions this executor registered (for tests)

    def region(self) -> str:
        return str(self.client.meta.region_name)

    def max_submissions(self, job: Job | None = None) -> int:
        """Once (Batch retries lost hosts itself); under ``spot = "first"`` twice: the
        Spot submission, then the on-demand one after a lost Spot host."""
        return 2 if job is not None and self.spot_first(job) else 1

    def spot_first(self, job: Job) -> bool:
        first = super().spot_first(job)
        if first and not self.settings.spot_job_queue:
            raise ConfigError(
                'spot = "first" on batch needs luigi.cfg [batch] spot_job_queue (the Spot '
                "queue Terraform creates: terraform output names)"
            )
        return first

    def where(self) -> str:
        return f"queue {self.settings.job_queue}"

    def console_url(self, task_id: str) -> str:
        return aws.batch_job_url(self.region(), task_id)

    def submit_job_params(self, job: Job, command: list[str], env: dict[str, str],
                          tags: dict[str, str], *, job_definition: str = "",
                          capacity: str = "") -> dict[str, Any]:  # fmt: skip
        """The ``SubmitJob`` request for one job; ``job_definition`` = the one running the
        spec's image (default: the configured one); ``capacity`` ``spot`` sends it to the
        Spot queue with ``spot_retry_strategy()``."""
        s = self.settings
        name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{job.spec.name}-{job.cohort}-{job.attempt}")
        spot = capacity == SPOT
        return {
            "jobName": name[:128],
            "jobQueue": s.spot_job_queue if spot else s.job_queue,
            "jobDefinition": job_definition or s.job_definition,
            "containerOverrides": {
                "command": command,
                "environment": [{"name": k, "value": v} for k, v in env.items()],
                "resourceRequirements": [
                    {"type": "VCPU", "value": f"{job.spec.cpu / 1024:g}"},
                    {"type": "MEMORY", "value": str(job.spec.memory)},
                ],
            },
            # Batch's own hard limit per attempt, on top of the wrapper's deadline inside.
            "timeout": {
                "attemptDurationSeconds": max(60, int(job.spec.timeout_seconds + s.timeout_grace))
            },
            "retryStrategy": spot_retry_strategy() if spot else retry_strategy(s.attempts),
            "tags": tags,
            "propagateTags": True,
        }

    def submit(self, job: Job, command: list[str], env: dict[str, str],
               tags: dict[str, str], deadline: float, *, submission: int = 1,
               capacity: str = "") -> str:  # fmt: skip
        params = self.submit_job_params(
            job, command, env, tags, job_definition=self.job_definition_for(job),
            capacity=capacity,
        )  # fmt: skip
        try:
            response = aws.with_backoff(lambda: self.client.submit_job(**params))
        except Exception as exc:
            raise CloudError(
                f"batch SubmitJob for cohort {job.cohort} on queue {params['jobQueue']} "
                f"(job definition {self.settings.job_definition}) failed: "
                f"{aws.describe_error(exc)}"
            ) from None
        job_id = str(response["jobId"])
        log.info("cohort %s: submitted batch job %s", job.cohort, job_id)
        return job_id

    def describe(self, ids: list[str]) -> dict[str, TaskState]:
        response = self.client.describe_jobs(jobs=ids)
        return {
            str(j["jobId"]): job_state(j, self.settings.log_group)
            for j in response.get("jobs") or []
        }

    def running(self) -> list[Candidate]:
        queues = self.settings.queues()
        return [job for queue in queues for job in list_pipeline_jobs(self.client, queue)]

    def stop(self, task_id: str, reason: str) -> None:
        self.client.terminate_job(jobId=task_id, reason=reason)

    # -- the spec's image ------------------------------------------------------------------
    def configured_definition(self) -> dict[str, Any]:
        """``[batch] job_definition`` (a name: its newest active revision; ``name:rev`` or
        an ARN: that one) as DescribeJobDefinitions returns it, read once."""
        with self._definitions_lock:
            if self._configured is None:
                wanted = self.settings.job_definition
                try:
                    if ":" in wanted:
                        found = self.client.describe_job_definitions(jobDefinitions=[wanted])
                    else:
                        found = self.client.describe_job_definitions(
                            jobDefinitionName=wanted, status="ACTIVE"
                        )
                except Exception as exc:
                    raise CloudError(
                        f"batch: cannot read [batch] job_definition {wanted!r}: "
                        f"{aws.describe_error(exc)}"
                    ) from None
                definitions = found.get("jobDefinitions") or []
                if not definitions:
                    raise ConfigError(
                        f"batch job definition {wanted!r} does not exist or is inactive: set "
                        "luigi.cfg [batch] job_definition to the stack's (terraform output names)"
                    )
                self._configured = max(definitions, key=lambda d: int(d.get("revision", 0)))
            return self._configured

    def job_definition_for(self, job: Job) -> str:
        """The job definition that runs the spec's image (``CloudExecutor.definition_for``)."""
        return self.definition_for(job.spec.image, self.settings.job_definition)

    def job_image(self, job: Job) -> str:
        if job.spec.image:
            return job.spec.image
        try:
            configured = self.configured_definition()
        except (CloudError, ConfigError):
            return ""
        return str((configured.get("containerProperties") or {}).get("image") or "")

    def _derive(self, image: str) -> str:
        configured = self.configured_definition()
        container = configured.get("containerProperties")
        if container is None:
            raise ConfigError(
                f"batch job definition {configured.get('jobDefinitionName')!r} is not a "
                "container job definition: its image cannot be replaced by the spec's; leave "
                "the spec's image empty"
            )
        if container.get("image") == image:
            return self.settings.job_definition
        name = derived_name(str(configured["jobDefinitionName"]), image)
        try:
            existing = (
                self.client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE").get(
                    "jobDefinitions"
                )
                or []
            )
        except Exception as exc:
            raise CloudError(
                f"batch: cannot look up job definition {name}: {aws.describe_error(exc)}"
            ) from None
        same = [d for d in existing if (d.get("containerProperties") or {}).get("image") == image]
        if same:
            arn = str(max(same, key=lambda d: int(d.get("revision", 0)))["jobDefinitionArn"])
            log.info("batch: image %s runs as %s (registered before)", image, arn)
            return arn
        request: dict[str, Any] = {
            key: configured[key] for key in REGISTRABLE if configured.get(key) not in (None, [], {})
        }
        request["jobDefinitionName"] = name
        request["containerProperties"] = {**container, "image": image}
        request["tags"] = {
            **{k: v for k, v in (configured.get("tags") or {}).items() if not k.startswith("aws:")},
            "derived_from": str(configured["jobDefinitionArn"])[:256],
        }
        try:
            registered = aws.with_backoff(lambda: self.client.register_job_definition(**request))
        except Exception as exc:
            raise CloudError(
                f"batch: cannot register job definition {name} for image {image}: "
                f"{aws.describe_error(exc)}; the worker needs batch:RegisterJobDefinition, "
                "batch:TagResource and iam:PassRole on the job roles — or leave the spec's "
                "image empty to run the configured job definition's image"
            ) from None
        self.registrations += 1
        arn = str(registered["jobDefinitionArn"])
        log.info("batch: registered %s to run image %s", arn, image)
        return arn


def derived_name(name: str, image: str) -> str:
    """The job definition that runs ``image`` instead of ``name``'s own (Batch allows 128
    letters, digits, hyphens and underscores)."""
    return f"{name[:115]}-{hashlib.sha256(image.encode()).hexdigest()[:12]}"
