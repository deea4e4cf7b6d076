"""The reaper: stop the cloud tasks a dead worker left behind.

``reap()`` lists the pipeline's running ECS tasks (``[ecs] cluster``, ``startedBy`` and
the ``pipeline`` tag: ``ecs.list_pipeline_tasks``) and active Batch jobs (``[batch]
job_queue``: ``batch.list_pipeline_jobs``), reads the lease
each one is tagged with, and stops those whose lease is gone or older than
``[reaper] lease_ttl`` seconds, and those whose ``deadline`` tag has passed. A task whose
lease is fresh and whose deadline is ahead is never touched, so running it at any time,
from anywhere, is safe. ``pipeline reap`` is its command; a scheduler (and later the
metrics work) can call ``reap()`` directly.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from pipeline import config
from pipeline.executors import aws
from pipeline.executors.base import Candidate
from pipeline.executors.batch import list_pipeline_jobs, spot_job_queue
from pipeline.executors.ecs import list_pipeline_tasks
from pipeline.executors.lease import LeaseStatus, LeaseStore, check_lease, lease_settings

log = logging.getLogger("pipeline.executors.reaper")


@dataclass
class Reaped:
    """One task or job the reaper stopped (or would stop, in a dry run)."""

    executor: str  # ecs | batch
    id: str  # task ARN or job id
    run_date: str
    cohort: str
    lease: str
    reason: str
    stopped: bool = False  # False in a dry run or when the stop call failed
    error: str = ""

    def line(self) -> str:
        verb = "stopped" if self.stopped else ("FAILED to stop" if self.error else "would stop")
        where = f"run_date {self.run_date or '?'}, cohort {self.cohort or '?'}"
        tail = f": {self.error}" if self.error else ""
        return f"{verb} {self.executor} {self.id} ({where}): {self.reason}{tail}"


@dataclass
class ReapReport:
    """Everything one pass saw: what it stopped, what it kept, what went wrong."""

    reaped: list[Reaped] = field(default_factory=list)
    kept: int = 0  # pipeline tasks with a fresh lease and a future deadline
    errors: list[str] = field(default_factory=list)


def verdict(
    tags: dict[str, str],
    *,
    now: float,
    ttl: float,
    default_root: str,
    lease_of: Callable[[str, str], LeaseStatus],
) -> str:
    """Why this task should be stopped, or "" to keep it."""
    deadline = tags.get("deadline", "")
    try:
        due = float(deadline) if deadline else None
    except ValueError:
        due = None
    if due is not None and now > due:
        return f"deadline passed {now - due:.0f}s ago"
    status = lease_of(tags.get("lease_store") or default_root, tags.get("lease", ""))
    return "" if status.fresh else status.reason


def reap(
    *,
    ecs: Any = None,
    cluster: str = "",
    batch: Any = None,
    job_queue: str = "",
    ttl: float,
    default_root: str,
    dry_run: bool = False,
    now: Callable[[], float] = time.time,
    workers: int = 16,
    on_reaped: Callable[[Reaped], None] | None = None,
) -> ReapReport:
    """One reaper pass over an ECS cluster and/or a Batch queue (pass the client and its
    name for each one to look at). Stops run concurrently (``workers`` threads);
    ``on_reaped`` is called for each stopped item as soon as its stop call returned."""
    report = ReapReport()
    candidates = _list_candidates(ecs, cluster, batch, job_queue, report)
    checked_at = now()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        lease_of = _read_leases(candidates, pool, ttl=ttl, now=checked_at,
                                default_root=default_root)  # fmt: skip
        doomed = _judge(candidates, report, now=checked_at, ttl=ttl, default_root=default_root,
                        lease_of=lease_of)  # fmt: skip
        stop = None if dry_run else functools.partial(_stop, ecs=ecs, cluster=cluster, batch=batch)
        # Reported from this thread as each stop returns (no interleaved output).
        for item in _stopped(doomed, pool, stop):
            report.reaped.append(item)
            if on_reaped is not None:
                on_reaped(item)
    report.errors += [
        f"cannot stop {r.executor} {r.id}: {r.error}" for r in report.reaped if r.error
    ]
    return report


def _list_candidates(
    ecs: Any, cluster: str, batch: Any, job_queue: str, report: ReapReport
) -> list[Candidate]:
    """The pipeline's tasks of the cluster and jobs of the queue that are given; a listing
    that fails is an error of the report (the other one is still listed)."""
    candidates: list[Candidate] = []
    sources: list[tuple[str, Callable[[], Iterable[Candidate]]]] = []
    if ecs is not None and cluster:
        sources.append((f"ecs cluster {cluster}", lambda: list_pipeline_tasks(ecs, cluster)))
    # job_queue: one queue or several, comma-separated (the on-demand and the Spot queue).
    for queue in (q.strip() for q in job_queue.split(",") if batch is not None):
        if queue:
            sources.append((f"batch queue {queue}", lambda q=queue: list_pipeline_jobs(batch, q)))
    for where, listing in sources:
        try:
            candidates.extend(listing())
        except Exception as exc:
            report.errors.append(f"cannot list {where}: {aws.describe_error(exc)}")
    return candidates


def _read_leases(
    candidates: list[Candidate],
    pool: ThreadPoolExecutor,
    *,
    ttl: float,
    now: float,
    default_root: str,
) -> Callable[[str, str], LeaseStatus]:
    """Read every distinct lease once, concurrently (one worker process = one lease); the
    answer looks a lease up, raising what its read raised."""
    keys = sorted({(c.tags.get("lease_store") or default_root, c.tags.get("lease", ""))
                   for c in candidates})  # fmt: skip
    store = LeaseStore()

    def check(key: tuple[str, str]) -> LeaseStatus | BaseException:
        try:
            return check_lease(key[0], key[1], ttl=ttl, now=now, store=store)
        except Exception as exc:
            return exc

    leases = dict(zip(keys, pool.map(check, keys), strict=True))

    def lease_of(root: str, lease_id: str) -> LeaseStatus:
        status = leases[(root, lease_id)]
        if isinstance(status, BaseException):
            raise status
        return status

    return lease_of


def _judge(
    candidates: list[Candidate],
    report: ReapReport,
    *,
    now: float,
    ttl: float,
    default_root: str,
    lease_of: Callable[[str, str], LeaseStatus],
) -> list[Reaped]:
    """The candidates to stop (``verdict``); the others are counted as kept, and one whose
    lease cannot be read is kept and reported as an error."""
    doomed: list[Reaped] = []
    for c in candidates:
        try:
            why = verdict(c.tags, now=now, ttl=ttl, default_root=default_root,
                          lease_of=lease_of)  # fmt: skip
        except Exception as exc:  # an unreadable lease: keep the task, say so
            report.errors.append(f"cannot check the lease of {c.executor} {c.id}: {exc}")
            continue
        if not why:
            report.kept += 1
            continue
        tags = c.tags
        doomed.append(
            Reaped(c.executor, c.id, tags.get("run_date", ""), tags.get("cohort", ""),
                   tags.get("lease", ""), why)
        )  # fmt: skip
    return doomed


def _stopped(
    doomed: list[Reaped], pool: ThreadPoolExecutor, stop: Callable[[Reaped], Reaped] | None
) -> Iterator[Reaped]:
    """Stop every doomed item on the pool; yields each as its stop returns (every item as
    it is when ``stop`` is None: a dry run)."""
    if stop is None:
        yield from doomed
        return
    for future in as_completed([pool.submit(stop, d) for d in doomed]):
        yield future.result()


def _stop(item: Reaped, *, ecs: Any, cluster: str, batch: Any) -> Reaped:
    """Stop one task (``StopTask``) or job (``TerminateJob``); a failure is kept in
    ``item.error``, not raised."""
    reason = f"survey-pipeline reaper: {item.reason}"[:255]
    try:
        if item.executor == "ecs":
            aws.with_backoff(
                lambda: ecs.stop_task(cluster=cluster, task=item.id, reason=reason),
                retry_if=aws.is_transient,
            )
        else:
            aws.with_backoff(
                lambda: batch.terminate_job(jobId=item.id, reason=reason),
                retry_if=aws.is_transient,
            )
        item.stopped = True
    except Exception as exc:
        item.error = aws.describe_error(exc)
    return item


def reap_from_config(
    *,
    dry_run: bool = False,
    executors: Iterable[str] | None = None,
    on_reaped: Callable[[Reaped], None] | None = None,
) -> ReapReport:
    """``reap()`` with clients and names from luigi.cfg: ``[ecs] cluster``,
    ``[batch] job_queue`` and ``spot_job_queue``, ``[reaper] lease_ttl`` and ``[reaper]
    executors``."""
    chosen = set(executors or config.get_list("reaper", "executors") or ["ecs", "batch"])
    _interval, ttl = lease_settings()
    return reap(
        ecs=aws.ecs_client() if "ecs" in chosen else None,
        cluster=config.get("ecs", "cluster", "survey-pipeline"),
        batch=aws.batch_client() if "batch" in chosen else None,
        job_queue=",".join(
            q
            for q in (
                config.get("batch", "job_queue", "survey-pipeline"),
                spot_job_queue(),
            )
            if q
        ),
        ttl=ttl,
        default_root=config.storage_root(),
        dry_run=dry_run,
        workers=int(config.get_float("reaper", "workers", 16)),
        on_reaped=on_reaped,
    )
