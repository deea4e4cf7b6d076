"""AWS clients and small helpers shared by the ECS and Batch executors and the reaper.

Clients are made by functions, on demand, never at import time. boto3 itself honours
``AWS_ENDPOINT_URL`` (tests point it at a local moto server) and the standard credential
chain (the task role in production); nothing here reads or logs a credential.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoRegionError,
    ReadTimeoutError,
)

from pipeline.errors import ConfigError

T = TypeVar("T")

# Every task and job the pipeline starts carries this tag; the reaper only looks at those.
PIPELINE_TAG = ("pipeline", "survey-pipeline")
# ECS ``startedBy``: lets ListTasks filter the pipeline's tasks on a shared cluster.
STARTED_BY = "survey-pipeline"
# The container command of every cloud run (``--stop-with-parent`` is for local runs only).
WRAPPER_COMMAND = ("python", "-m", "pipeline.wrapper", "--job")
MAX_DESCRIBE = 100  # DescribeTasks and DescribeJobs take at most 100 ids per call

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
    }
)


def client_config(*, max_attempts: int = 8) -> Config:
    """Retries in botocore's ``adaptive`` mode (client-side rate limiting on throttling),
    bounded timeouts and a connection pool large enough for concurrent cohorts."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=50,
    )


def region() -> str | None:
    """``AWS_DEFAULT_REGION``, else ``AWS_REGION``, else None (boto3's own lookup: the
    profile in ~/.aws/config). boto3 reads only the first variable, while ECS, Batch and
    most AWS tooling set the second, so a shell with only ``AWS_REGION`` works too."""
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None


def client(service: str, *, max_attempts: int = 8) -> Any:
    """A boto3 client for ``service`` in :func:`region` with :func:`client_config` (a new
    session each call, so it is safe to call after ``fork`` in luigi's worker processes)."""
    try:
        return boto3.session.Session().client(
            service, region_name=region(), config=client_config(max_attempts=max_attempts)
        )
    except NoRegionError:
        raise ConfigError(
            f"no AWS region for the {service} client: set AWS_REGION (ECS and Batch set it "
            "in containers) or AWS_DEFAULT_REGION"
        ) from None


def ecs_client() -> Any:
    return client("ecs")


def batch_client() -> Any:
    return client("batch")


def logs_client() -> Any:
    return client("logs")


def s3_client() -> Any:
    return client("s3")


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def is_transient(exc: BaseException) -> bool:
    """Throttling, a server-side 5xx or a network problem: worth trying again later."""
    if is_throttling(exc):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status or 0) >= 500
    return isinstance(
        exc,
        EndpointConnectionError | ConnectionClosedError | ConnectTimeoutError | ReadTimeoutError,
    )


def describe_error(exc: BaseException) -> str:
    """One line for an AWS error: its code and message (never the request's headers)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def with_backoff(
    call: Callable[[], T],
    *,
    retry_if: Callable[[BaseException], bool] = is_throttling,
    attempts: int = 6,
    base: float = 0.5,
    cap: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried with full-jitter exponential backoff while ``retry_if`` holds.

    botocore already retries throttled calls; this second layer covers bursts that outlast
    its attempts (e.g. 200 cohorts submitted at once)."""
    for attempt in range(attempts):
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            if attempt == attempts - 1 or not retry_if(exc):
                raise
            sleep(random.uniform(0, min(cap, base * 2**attempt)))
    raise AssertionError("unreachable")


def chunks(items: Sequence[T], size: int = MAX_DESCRIBE) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def console_host(region: str) -> str:
    return f"https://{region}.console.aws.amazon.com"


def ecs_task_url(region: str, cluster: str, task_arn: str) -> str:
    task_id = task_arn.rsplit("/", 1)[-1]
    cluster_name = cluster.rsplit("/", 1)[-1]
    return (
        f"{console_host(region)}/ecs/v2/clusters/{quote(cluster_name)}/tasks/{task_id}"
        f"/configuration?region={region}"
    )


def batch_job_url(region: str, job_id: str) -> str:
    return f"{console_host(region)}/batch/home?region={region}#jobs/detail/{job_id}"


def _console_escape(value: str) -> str:
    # The CloudWatch console double-encodes path parts and writes '%' as '$'.
    return quote(quote(value, safe=""), safe="").replace("%", "$")


def log_stream_url(region: str, group: str, stream: str) -> str:
    return (
        f"{console_host(region)}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"{_console_escape(group)}/log-events/{_console_escape(stream)}"
    )


def log_tail(logs: Any, group: str, stream: str, lines: int) -> list[str]:
    """The last ``lines`` messages of a CloudWatch log stream (empty if it does not exist)."""
    try:
        response = with_backoff(
            lambda: logs.get_log_events(
                logGroupName=group, logStreamName=stream, startFromHead=False, limit=lines
            ),
            retry_if=is_transient,
            attempts=3,
        )
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return [str(event.get("message", "")).rstrip("\n") for event in response.get("events", [])]


def tag_dict(tags: list[dict[str, str]] | dict[str, str] | None) -> dict[str, str]:
    """Tags as a dict, from ECS's ``[{"key", "value"}]`` or Batch's plain dict."""
    if not tags:
        return {}
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t.get("key", "")): str(t.get("value", "")) for t in tags}
