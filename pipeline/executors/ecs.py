"""The ECS executor: one ``RunTask`` per cohort, watched until it stops.

Settings come from luigi.cfg ``[ecs]``: ``cluster``, ``task_definition`` (its container
``container_name`` gets the wrapper command), ``launch_type`` (``FARGATE``, ``EC2``, or
empty for the cluster's default capacity provider strategy), ``subnets``,
``security_groups``, ``assign_public_ip`` (awsvpc networking; required for Fargate),
``platform_version``, ``poll_interval``/``poll_max_interval`` (seconds) and
``log_lines`` (CloudWatch lines copied into the local log). The log group and stream
prefix are read from the task definition's ``awslogs`` configuration unless
``log_group``/``log_stream_prefix`` are set.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.executors import aws
from pipeline.executors.base import Job
from pipeline.executors.cloud import CloudError, CloudExecutor, TaskState

log = logging.getLogger("pipeline.executors.ecs")

LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL", "")


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

    @classmethod
    def from_config(cls) -> EcsSettings:
        """The ``[ecs]`` section of luigi.cfg."""
        launch_type = config.get("ecs", "launch_type", "FARGATE").upper()
        if launch_type not in LAUNCH_TYPES:
            raise ConfigError(
                f"luigi.cfg [ecs] launch_type = {launch_type!r}: use FARGATE, EC2, EXTERNAL "
                "or leave it empty for the cluster's default capacity provider strategy"
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
        )


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def task_state(task: dict[str, Any], container_name: str) -> TaskState:
    """A ``DescribeTasks`` task as a ``TaskState``: exit code of our container, stop code,
    stopped reason and the container's own reason (e.g. ``OutOfMemoryError``)."""
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
    )


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
        )
        self.client = client if client is not None else aws.ecs_client()
        self._logs = logs_client
        self._log_config: tuple[str, str] | None = None
        self._log_config_lock = threading.Lock()

    def region(self) -> str:
        return str(self.client.meta.region_name)

    def where(self) -> str:
        return f"cluster {self.settings.cluster}"

    def console_url(self, task_id: str) -> str:
        return aws.ecs_task_url(self.region(), self.settings.cluster, task_id)

    def run_task_params(self, job: Job, command: list[str], env: dict[str, str],
                        tags: dict[str, str]) -> dict[str, Any]:  # fmt: skip
        """The ``RunTask`` request for one job (a method of its own so tests can read it)."""
        s = self.settings
        params: dict[str, Any] = {
            "cluster": s.cluster,
            "taskDefinition": s.task_definition,
            "count": 1,
            "startedBy": aws.STARTED_BY,
            # The same token for a retried call: a timed-out RunTask that did start a task
            # does not start a second one.
            "clientToken": hashlib.sha256(job.job_uri.encode()).hexdigest()[:64],
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
        if s.launch_type:
            params["launchType"] = s.launch_type
        if s.platform_version:
            params["platformVersion"] = s.platform_version
        if s.subnets:
            vpc: dict[str, Any] = {"subnets": list(s.subnets), "assignPublicIp": s.assign_public_ip}
            if s.security_groups:
                vpc["securityGroups"] = list(s.security_groups)
            params["networkConfiguration"] = {"awsvpcConfiguration": vpc}
        elif s.launch_type == "FARGATE":
            raise ConfigError(
                "luigi.cfg [ecs] subnets is empty: Fargate tasks need awsvpc networking "
                "(set subnets and security_groups, or launch_type = EC2)"
            )
        return params

    def submit(self, job: Job, command: list[str], env: dict[str, str],
               tags: dict[str, str], deadline: float) -> str:  # fmt: skip
        params = self.run_task_params(job, command, env, tags)
        self._awslogs()  # read the task definition's log settings once, before any task runs
        try:
            response = aws.with_backoff(lambda: self.client.run_task(**params))
        except Exception as exc:
            raise CloudError(
                f"ecs RunTask for cohort {job.cohort} on cluster {self.settings.cluster} "
                f"(task definition {self.settings.task_definition}) failed: "
                f"{aws.describe_error(exc)}"
            ) from None
        tasks = response.get("tasks") or []
        if not tasks:
            failures = "; ".join(
                f"{f.get('reason', '?')}" + (f" ({f['detail']})" if f.get("detail") else "")
                for f in response.get("failures") or []
            )
            raise CloudError(
                f"ecs RunTask started no task for cohort {job.cohort} on cluster "
                f"{self.settings.cluster}: {failures or 'no capacity to place it'}"
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

    def running(self) -> list[tuple[str, dict[str, str]]]:
        from pipeline.executors.reaper import _ecs_candidates  # reaper imports executors

        return [(c.id, c.tags) for c in _ecs_candidates(self.client, self.settings.cluster)]

    def stop(self, task_id: str, reason: str) -> None:
        self.client.stop_task(cluster=self.settings.cluster, task=task_id, reason=reason)

    def _awslogs(self) -> tuple[str, str]:
        """(group, stream prefix) from settings or the task definition (read once)."""
        with self._log_config_lock:
            if self._log_config is None:
                group, prefix = self.settings.log_group, self.settings.log_stream_prefix
                if not group:
                    try:
                        definition = self.client.describe_task_definition(
                            taskDefinition=self.settings.task_definition
                        )["taskDefinition"]
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
