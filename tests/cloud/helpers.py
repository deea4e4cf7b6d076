"""Jobs and executors for the cloud tests (the executors' settings point at moto)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.spec import spec_from_dict
from pipeline.executors import Job
from pipeline.executors.batch import BatchExecutor, BatchSettings
from pipeline.executors.ecs import EcsExecutor, EcsSettings
from tests.cloud.conftest import (
    BUCKET,
    CLUSTER,
    CONTAINER,
    JOB_DEFINITION,
    QUEUE,
    TASK_DEFINITION,
)

ECS_SETTINGS = EcsSettings(
    cluster=CLUSTER, task_definition=TASK_DEFINITION, container_name=CONTAINER,
    launch_type="EC2", poll_interval=0.05, poll_max_interval=0.2, log_lines=50,
)  # fmt: skip
BATCH_SETTINGS = BatchSettings(
    job_queue=QUEUE, job_definition=JOB_DEFINITION, poll_interval=0.05,
    poll_max_interval=0.2, log_lines=50,
)  # fmt: skip


def make_job(tmp_path: Path, *, cohort: str = "asthma", timeout: float = 3600,
             cpu: int = 2048, memory: int = 4096) -> Job:  # fmt: skip
    spec = spec_from_dict(
        {
            "name": "toy",
            "version": "1.0",
            "image": "toy:1.0",
            "command": ["python", "toy.py", "{input}", "{output_dir}"],
            "outputs": {"results": "estimates.csv"},
            "timeout": timeout,
            "cpu": cpu,
            "memory": memory,
        }
    )
    attempt = f"20261122T000000Z-{cohort[:6]}"
    base = f"s3://{BUCKET}/work/2026-11-22/model/{cohort}/{spec.slug}/attempts/{attempt}"
    return Job(
        run_date="2026-11-22", cohort=cohort, spec=spec, attempt=attempt,
        job_uri=f"{base}/job.json", output_uri=f"{base}/out",
        log_path=tmp_path / "logs" / f"{cohort}.log",
    )  # fmt: skip


def ecs_executor(**kwargs: Any) -> EcsExecutor:
    return EcsExecutor(ECS_SETTINGS, **kwargs)


def batch_executor(**kwargs: Any) -> BatchExecutor:
    return BatchExecutor(BATCH_SETTINGS, **kwargs)


def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def in_background(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread
