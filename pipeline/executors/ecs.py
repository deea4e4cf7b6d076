"""The ECS executor: one ``RunTask`` per cohort, watched until it stops.

Settings come from luigi.cfg ``[ecs]``: ``cluster``, ``task_definition`` (its container
``container_name`` gets the wrapper command), ``launch_type`` (``FARGATE``, ``EC2``, or
empty for the cluster's default capacity provider strategy), ``subnets``,
``security_groups``, ``assign_public_ip`` (awsvpc networking; required for Fargate),
``platform_version``, ``capacity_provider`` (e.g. ``FARGATE_SPOT``: sent as a
``capacityProviderStrategy`` instead of the launch type), ``spot`` (``first``: the first
submission on ``spot_capacity_provider``, default ``FARGATE_SPOT``, any after an
interruption on ``on_demand_capacity_provider``, default empty = ``launch_type``),
``attempts`` (submissions of one
job when the infrastructure interrupts it: a Fargate Spot interruption or a lost EC2
host; never a program's own exit), ``poll_interval``/``poll_max_interval`` (seconds),
``capacity_retry_initial``/``capacity_retry_max`` (seconds between ``RunTask`` calls while
the cluster has no capacity for the task, see ``placement_failure``) and ``log_lines``
(CloudWatch lines copied into the local log). The log group and stream
prefix are read from the task definition's ``awslogs`` configuration unless
``log_group``/``log_stream_prefix`` are set.

The image: when the program spec names an ``image`` other than the one in the configured
task definition's container, the task runs a task definition derived from the configured
one with the spec's image, registered on demand in its own family
``<family>-<12 hex of sha256(image)>`` (the configured family's latest revision never
changes), looked up first and reused, cached per process. An empty spec image runs the
configured definition as it is.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.executors import aws
from pipeline.executors.base import ON_DEMAND, SPOT, Candidate, Job, spot_setting
from pipeline.executors.cloud import CapacityUnavailable, CloudError, CloudExecutor, TaskState

log = logging.getLogger("pipeline.executors.ecs")

LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL", "")
# What ECS reports when the infrastructure, not the program, ended a task: stop codes
# (DescribeTasks ``stopCode``) and stopped reasons of a lost EC2 container instance.
INTERRUPTION_STOP_CODES = ("SpotInterruption", "TerminationNotice")
LOST_HOST = re.compile(
    r"^Host EC2 \(instance [^)]+\) (terminated|stopped)"
    r"|\b(EC2 instance|container instance) \S+ (was )?(terminated|stopped|retired)"
    r"|\bcontainer instance (was )?(terminated|deregistered|retired)",
    re.IGNORECASE,
)
# RunTask ``failures[].reason`` values that say "no capacity now, try again later" (AWS,
# "API failure reasons"): a container instance without the CPU, memory, ENIs, GPUs or ports
# the task needs, an instance whose agent is disconnected, Fargate (Spot) without capacity
# in the zone. ``ATTRIBUTE`` (placement constraints unmet on an instance) rides along when
# other instances lack capacity; alone it is a configuration problem, as is every other
# reason (``MISSING`` cluster, an inactive task definition, ...).
CAPACITY_REASONS = re.compile(r"^(RESOURCE:\S+|AGENT)$|^Capacity is unavailable", re.IGNORECASE)
BYSTANDER_REASONS = ("ATTRIBUTE",)
# Fields of a DescribeTaskDefinition answer that RegisterTaskDefinition takes back.
REGISTRABLE = (
    "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "volumes",
    "placementConstraints", "requiresCompatibilities", "cpu", "memory", "pidMode",
    "ipcMode", "proxyConfiguration", "inferenceAccelerators", "ephemeralStorage",
    "runtimePlatform", "enableFaultInjection",
)  # fmt: skip


@dataclass(frozen=True)
class EcsSettings:
    cluster: str = "survey-pipeline"
    task_definition: str = "survey-pipeline-estimator"
    container_name: str = "estimator"
    launch_type: str = "FARGATE"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: str = "DISABLED"
    platform_version: str = ""
    log_group: str = ""
    log_stream_prefix: str = ""
    poll_interval: float = 5.0
    poll_max_interval: float = 30.0
    log_lines: int = 200
    capacity_provider: str = ""
    attempts: int = 3
    # spot = "first" (docs/executors.md, "Spot first"): the capacity provider of the first
    # submission, and of every one after an interruption ("" = launch_type).
    spot: str = ""
    spot_capacity_provider: str = "FARGATE_SPOT"
    on_demand_capacity_provider: str = ""
    # Backoff between RunTask calls that found no capacity (until the cohort's deadline).
    capacity_retry_initial: float = 5.0
    capacity_retry_max: float = 60.0

    @classmethod
    def from_config(cls) -> EcsSettings:
        """The ``[ecs]`` section of luigi.cfg."""
        launch_type = config.get("ecs", "launch_type", "FARGATE").upper()
        if launch_type not in LAUNCH_TYPES:
            raise ConfigError(
                f"{config.where('ecs', 'launch_type')} = {launch_type!r}: use FARGATE, EC2, "
                "EXTERNAL or leave it empty for the cluster's default capacity provider strategy"
            )
        attempts = int(config.get_float("ecs", "attempts", cls.attempts))
        if not 1 <= attempts <= 10:
            raise ConfigError(
                f"luigi.cfg [ecs] attempts = {attempts}: use 1 (never resubmit) to 10 "
                "submissions of one job after Spot interruptions or lost hosts"
            )
        retry_initial = config.get_float(
            "ecs", "capacity_retry_initial", cls.capacity_retry_initial
        )
        retry_max = config.get_float("ecs", "capacity_retry_max", cls.capacity_retry_max)
        if not 0 < retry_initial <= retry_max:
            raise ConfigError(
                f"luigi.cfg [ecs] capacity_retry_initial = {retry_initial:g}, capacity_retry_max "
                f"= {retry_max:g}: use 0 < capacity_retry_initial <= capacity_retry_max "
                "(seconds between RunTask calls that found no capacity)"
            )
        return cls(
            cluster=config.get("ecs", "cluster", cls.cluster),
            task_definition=config.get("ecs", "task_definition", cls.task_definition),
            container_name=config.get("ecs", "container_name", cls.container_name),
            launch_type=launch_type,
            subnets=tuple(config.get_list("ecs", "subnets")),
            security_groups=tuple(config.get_list("ecs", "security_groups")),
            assign_public_ip=config.get("ecs", "assign_public_ip", "DISABLED").upper(),
            platform_version=config.get("ecs", "platform_version"),
            log_group=config.get("ecs", "log_group"),
            log_stream_prefix=config.get("ecs", "log_stream_prefix"),
            poll_interval=config.get_float("ecs", "poll_interval", cls.poll_interval),
            poll_max_interval=config.get_float("ecs", "poll_max_interval", cls.poll_max_interval),
            log_lines=int(config.get_float("ecs", "log_lines", cls.log_lines)),
            capacity_provider=config.get("ecs", "capacity_provider"),
            attempts=attempts,
            spot=spot_setting("ecs"),
            spot_capacity_provider=config.get(
                "ecs", "spot_capacity_provider", cls.spot_capacity_provider
            )
            or cls.spot_capacity_provider,
            on_demand_capacity_provider=config.get("ecs", "on_demand_capacity_provider"),
            capacity_retry_initial=retry_initial,
            capacity_retry_max=retry_max,
        )


def placement_failure(failures: list[dict[str, Any]]) -> str:
    """The RunTask ``failures`` as one line when they say only that no capacity is free
    now (worth trying again later: ``CAPACITY_REASONS``), else "" (fail at once)."""
    reasons = [str(f.get("reason") or "") for f in failures]
    if not any(CAPACITY_REASONS.search(r) for r in reasons):
        return ""
    if not all(CAPACITY_REASONS.search(r) or r.upper() in BYSTANDER_REASONS for r in reasons):
        return ""
    return describe_failures(failures)


def describe_failures(failures: list[dict[str, Any]]) -> str:
    """RunTask ``failures`` as ``reason (detail); ...``, each distinct one once."""
    parts = [
        f"{f.get('reason', '?')}" + (f" ({f['detail']})" if f.get("detail") else "")
        for f in failures
    ]
    return "; ".join(dict.fromkeys(parts))


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def interruption(task: dict[str, Any]) -> str:
    """Why the infrastructure ended a stopped task ("" if it did not): a Fargate Spot
    interruption (``SpotInterruption``), a retired Fargate host or draining instance
    (``TerminationNotice``), or a lost EC2 container instance (its stopped reason)."""
    code = str(task.get("stopCode") or "")
    reason = str(task.get("stoppedReason") or "")
    if code in INTERRUPTION_STOP_CODES or LOST_HOST.search(reason):
        return f"{code}: {reason}" if code and reason else code or reason
    return ""


def task_state(task: dict[str, Any], container_name: str) -> TaskState:
    """A ``DescribeTasks`` task as a ``TaskState``: exit code of our container, stop code,
    stopped reason and the container's own reason (e.g. ``OutOfMemoryError``), whether
    the infrastructure interrupted it, and the image (and digest) that ran."""
    status = str(task.get("lastStatus", "UNKNOWN"))
    containers = task.get("containers") or []
    container = next(
        (c for c in containers if c.get("name") == container_name),
        containers[0] if containers else {},
    )
    done = status in ("STOPPED", "DELETED")
    reasons = [str(part) for part in (task.get("stopCode"), task.get("stoppedReason")) if part]
    if container.get("reason"):
        reasons.append(f"container: {container['reason']}")
    exit_code = container.get("exitCode") if done else None
    return TaskState(
        id=str(task["taskArn"]),
        status=status,
        done=done,
        exit_code=int(exit_code) if exit_code is not None else None,
        reason="; ".join(reasons),
        started_at=_epoch(task.get("pullStartedAt")) or _epoch(task.get("startedAt")),
        stopped_at=_epoch(task.get("stoppedAt")) or _epoch(task.get("executionStoppedAt")),
        interruption=interruption(task) if done else "",
        image=str(container.get("image") or ""),
        image_digest=str(container.get("imageDigest") or ""),
    )


def list_pipeline_tasks(client: Any, cluster: str) -> Iterator[Candidate]:
    """Every pipeline task of ``cluster`` ECS still runs or is about to (``startedBy`` the
    pipeline, ``desiredStatus`` RUNNING, so PENDING too), tagged ``aws.PIPELINE_TAG`` and
    not yet STOPPED; described with their tags 100 at a time. What the reaper judges and
    a restart re-attaches to."""
    arns: list[str] = []
    for page in client.get_paginator("list_tasks").paginate(
        cluster=cluster, startedBy=aws.STARTED_BY, desiredStatus="RUNNING"
    ):
        arns.extend(page.get("taskArns") or [])
    key, value = aws.PIPELINE_TAG
    for batch in aws.chunks(arns):
        response = aws.with_backoff(
            lambda b=batch: client.describe_tasks(cluster=cluster, tasks=b, include=["TAGS"]),
            retry_if=aws.is_transient,
        )
        for task in response.get("tasks") or []:
            tags = aws.tag_dict(task.get("tags"))
            if tags.get(key) == value and task.get("lastStatus") != "STOPPED":
                yield Candidate("ecs", str(task["taskArn"]), tags)


def derived_family(family: str, image: str) -> str:
    """The family of the task definition that runs ``image`` instead of ``family``'s own
    image (ECS allows 255 letters, digits, hyphens and underscores)."""
    return f"{family[:240]}-{hashlib.sha256(image.encode()).hexdigest()[:12]}"


def family_of(task_definition: str) -> str:
    """``family`` of ``family``, ``family:rev`` or a task definition ARN."""
    return task_definition.rsplit("/", 1)[-1].split(":", 1)[0]


class EcsExecutor(CloudExecutor):
    """Runs each cohort as one ECS task of ``[ecs] task_definition`` with the wrapper as
    the container command; see ``CloudExecutor`` for the watching, stopping and records."""

    name = "ecs"

    def __init__(self, settings: EcsSettings | None = None, *, client: Any = None,
                 logs_client: Any = None) -> None:  # fmt: skip
        self.settings = settings or EcsSettings.from_config()
        super().__init__(
            poll_interval=self.settings.poll_interval,
            poll_max_interval=self.settings.poll_max_interval,
            log_lines=self.settings.log_lines,
            capacity_retry_initial=self.settings.capacity_retry_initial,
            capacity_retry_max=self.settings.capacity_retry_max,
        )
        self.client = client if client is not None else aws.ecs_client()
        self._logs = logs_client
        self._log_config: tuple[str, str] | None = None
        self._log_config_lock = threading.Lock()
        # spec image => task definition ARN that runs it; one lock per image so threads
        # asking for the same image wait for one registration, others go on.
        self._configured: dict[str, Any] | None = None
        self.registrations = 0  # task definitions this executor registered (for tests)

    def max_submissions(self, job: Job | None = None) -> int:
        return self.settings.attempts

    def configured_capacity(self) -> str:
        return SPOT if "SPOT" in self.settings.capacity_provider.upper() else ON_DEMAND

    def region(self) -> str:
        return str(self.client.meta.region_name)

    def where(self) -> str:
        return f"cluster {self.settings.cluster}"

    def console_url(self, task_id: str) -> str:
        return aws.ecs_task_url(self.region(), self.settings.cluster, task_id)

    def run_task_params(self, job: Job, command: list[str], env: dict[str, str],
                        tags: dict[str, str], *, submission: int = 1, placement: int = 1,
                        task_definition: str = "",
                        capacity: str = "") -> dict[str, Any]:  # fmt: skip
        """The ``RunTask`` request for one job (a method of its own so tests can read it);
        ``task_definition`` = the one running the spec's image (default: the configured);
        ``placement`` counts the RunTask answers that found no capacity for this submission;
        ``capacity`` (``spot``/``on_demand`` under ``spot = "first"``) picks
        ``spot_capacity_provider`` / ``on_demand_capacity_provider`` over the configured
        ``capacity_provider``."""
        s = self.settings
        provider = {
            SPOT: s.spot_capacity_provider,
            ON_DEMAND: s.on_demand_capacity_provider,
        }.get(capacity, s.capacity_provider)
        # The same token for a retried call: a timed-out RunTask that did start a task
        # does not start a second one. A resubmission after an interruption is a new task,
        # and so is a call after an answer that placed nothing: ECS may answer a token it
        # saw (for up to 24 hours) with its first answer, "no capacity" again.
        token = job.job_uri if submission == 1 else f"{job.job_uri}#{submission}"
        if placement > 1:
            token = f"{token}@{placement}"
        params: dict[str, Any] = {
            "cluster": s.cluster,
            "taskDefinition": task_definition or s.task_definition,
            "count": 1,
            "startedBy": aws.STARTED_BY,
            "clientToken": hashlib.sha256(token.encode()).hexdigest()[:64],
            "overrides": {
                "containerOverrides": [
                    {
                        "name": s.container_name,
                        "command": command,
                        "environment": [{"name": k, "value": v} for k, v in env.items()],
                    }
                ],
                "cpu": str(job.spec.cpu),
                "memory": str(job.spec.memory),
            },
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "enableECSManagedTags": True,
        }
        if provider:
            # A capacity provider strategy and a launch type exclude each other in RunTask.
            params["capacityProviderStrategy"] = [
                {"capacityProvider": provider, "weight": 1, "base": 0}
            ]
        elif s.launch_type:
            params["launchType"] = s.launch_type
        if s.platform_version:
            params["platformVersion"] = s.platform_version
        fargate = s.launch_type == "FARGATE" and not provider
        if s.subnets:
            vpc: dict[str, Any] = {"subnets": list(s.subnets), "assignPublicIp": s.assign_public_ip}
            if s.security_groups:
                vpc["securityGroups"] = list(s.security_groups)
            params["networkConfiguration"] = {"awsvpcConfiguration": vpc}
        elif fargate or provider.upper().startswith("FARGATE"):
            raise ConfigError(
                "luigi.cfg [ecs] subnets is empty: Fargate tasks need awsvpc networking "
                "(set subnets and security_groups, or launch_type = EC2)"
            )
        return params

    def submit(self, job: Job, command: list[str], env: dict[str, str],
               tags: dict[str, str], deadline: float, *, submission: int = 1,
               placement: int = 1, capacity: str = "") -> str:  # fmt: skip
        params = self.run_task_params(
            job, command, env, tags, submission=submission, placement=placement,
            task_definition=self.task_definition_for(job), capacity=capacity,
        )  # fmt: skip
        self._awslogs()  # read the task definition's log settings once, before any task runs
        where = f"cohort {job.cohort} on cluster {self.settings.cluster}"
        try:
            response = aws.with_backoff(lambda: self.client.run_task(**params))
        except Exception as exc:
            if aws.is_transient(exc):
                # Throttling, 5xx or the network past botocore's and with_backoff's retries:
                # try again later with the same token (the call may have started a task).
                raise CapacityUnavailable(
                    f"ecs RunTask for {where} failed: {aws.describe_error(exc)}",
                    reason=aws.describe_error(exc),
                    answered=False,
                ) from None
            raise CloudError(
                f"ecs RunTask for {where} (task definition {self.settings.task_definition}) "
                f"failed: {aws.describe_error(exc)}"
            ) from None
        tasks = response.get("tasks") or []
        if not tasks:
            failures = response.get("failures") or []
            capacity = placement_failure(failures)
            if capacity:
                raise CapacityUnavailable(
                    f"ecs RunTask found no capacity for {where}: {capacity}", reason=capacity
                )
            raise CloudError(
                f"ecs RunTask started no task for {where}: "
                f"{describe_failures(failures) or 'the answer has neither a task nor a failure'}"
            )
        arn = str(tasks[0]["taskArn"])
        log.info("cohort %s: started ecs task %s", job.cohort, arn)
        return arn

    def describe(self, ids: list[str]) -> dict[str, TaskState]:
        response = self.client.describe_tasks(cluster=self.settings.cluster, tasks=ids)
        states = {
            str(t["taskArn"]): task_state(t, self.settings.container_name)
            for t in response.get("tasks") or []
        }
        for failure in response.get("failures") or []:
            arn = str(failure.get("arn", ""))
            if arn in ids and arn not in states:
                states[arn] = TaskState(
                    arn, "MISSING", done=True, missing=True,
                    reason=f"DescribeTasks: {failure.get('reason', '?')} "
                    f"{failure.get('detail') or ''}".strip(),
                )  # fmt: skip
        return states

    def running(self) -> list[Candidate]:
        return list(list_pipeline_tasks(self.client, self.settings.cluster))

    def stop(self, task_id: str, reason: str) -> None:
        self.client.stop_task(cluster=self.settings.cluster, task=task_id, reason=reason)

    def _awslogs(self) -> tuple[str, str]:
        """(group, stream prefix) from settings or the task definition (read once)."""
        with self._log_config_lock:
            if self._log_config is None:
                group, prefix = self.settings.log_group, self.settings.log_stream_prefix
                if not group:
                    try:
                        definition = self.configured_definition()["taskDefinition"]
                        container = next(
                            (
                                c
                                for c in definition.get("containerDefinitions", [])
                                if c.get("name") == self.settings.container_name
                            ),
                            {},
                        )
                        options = (container.get("logConfiguration") or {}).get("options") or {}
                        group = options.get("awslogs-group", "")
                        prefix = prefix or options.get("awslogs-stream-prefix", "")
                    except Exception as exc:
                        log.warning("no CloudWatch log location for ecs tasks: %s",
                                    aws.describe_error(exc))  # fmt: skip
                self._log_config = (group, prefix)
            return self._log_config

    def log_location(self, task_id: str, state: TaskState | None) -> tuple[str, str]:
        group, prefix = self._awslogs()
        if not group or not prefix:  # without a prefix the stream name is not predictable
            return "", ""
        # The awslogs driver names streams prefix/container-name/task-id.
        return group, f"{prefix}/{self.settings.container_name}/{task_id.rsplit('/', 1)[-1]}"

    # -- the spec's image ------------------------------------------------------------------
    def configured_definition(self) -> dict[str, Any]:
        """``[ecs] task_definition`` as DescribeTaskDefinition returns it (with its tags),
        read once per executor."""
        with self._definitions_lock:
            if self._configured is None:
                name = self.settings.task_definition
                try:
                    try:
                        self._configured = aws.with_backoff(
                            lambda: self.client.describe_task_definition(
                                taskDefinition=name, include=["TAGS"]
                            )
                        )
                    except Exception as exc:
                        if "AccessDenied" not in aws.error_code(exc):
                            raise
                        # Tags may need more than ecs:DescribeTaskDefinition: go without
                        # them (a derived definition then carries only derived_from).
                        self._configured = aws.with_backoff(
                            lambda: self.client.describe_task_definition(taskDefinition=name)
                        )
                except Exception as exc:
                    raise CloudError(
                        f"ecs: cannot read [ecs] task_definition "
                        f"{self.settings.task_definition!r}: {aws.describe_error(exc)}; "
                        "check the name and the worker's ecs:DescribeTaskDefinition permission"
                    ) from None
            return self._configured

    def _container(self, definition: dict[str, Any]) -> dict[str, Any]:
        for container in definition.get("containerDefinitions") or []:
            if container.get("name") == self.settings.container_name:
                return dict(container)
        raise ConfigError(
            f"ecs task definition {definition.get('family')!r} has no container named "
            f"{self.settings.container_name!r}: set luigi.cfg [ecs] container_name"
        )

    def task_definition_for(self, job: Job) -> str:
        """The task definition that runs the spec's image (``CloudExecutor.definition_for``)."""
        return self.definition_for(job.spec.image, self.settings.task_definition)

    def job_image(self, job: Job) -> str:
        if job.spec.image:
            return job.spec.image
        try:
            configured = self.configured_definition()["taskDefinition"]
            return str(self._container(configured).get("image") or "")
        except (CloudError, ConfigError):
            return ""

    def _derive(self, image: str) -> str:
        answer = self.configured_definition()
        configured = answer["taskDefinition"]
        if self._container(configured).get("image") == image:
            return self.settings.task_definition
        family = derived_family(str(configured["family"]), image)
        try:
            existing = self.client.describe_task_definition(taskDefinition=family)
            definition = existing["taskDefinition"]
            if (
                self._container(definition).get("image") == image
                and definition.get("status", "ACTIVE") == "ACTIVE"
            ):
                arn = str(definition["taskDefinitionArn"])
                log.info("ecs: image %s runs as %s (registered before)", image, arn)
                return arn
        except Exception as exc:
            if aws.error_code(exc) not in ("ClientException", "InvalidParameterException"):
                raise CloudError(
                    f"ecs: cannot look up task definition {family}: {aws.describe_error(exc)}"
                ) from None
        request: dict[str, Any] = {
            key: configured[key] for key in REGISTRABLE if configured.get(key) not in (None, [], {})
        }
        request["family"] = family
        request["containerDefinitions"] = [
            {**c, "image": image} if c.get("name") == self.settings.container_name else c
            for c in configured.get("containerDefinitions") or []
        ]
        tags = [t for t in answer.get("tags") or [] if not str(t.get("key", "")).startswith("aws:")]
        tags.append({"key": "derived_from", "value": str(configured["taskDefinitionArn"])[:256]})
        request["tags"] = tags
        try:
            registered = aws.with_backoff(lambda: self.client.register_task_definition(**request))
        except Exception as exc:
            raise CloudError(
                f"ecs: cannot register task definition {family} for image {image}: "
                f"{aws.describe_error(exc)}; the worker needs ecs:RegisterTaskDefinition, "
                "ecs:TagResource and iam:PassRole on the task roles — or leave the spec's "
                "image empty to run the configured task definition's image"
            ) from None
        self.registrations += 1
        arn = str(registered["taskDefinition"]["taskDefinitionArn"])
        log.info("ecs: registered %s to run image %s", arn, image)
        return arn
