"""Collecting where a run date stands, cohort by cohort and step by step.

The targets are the truth (a step is done iff its outputs exist); failure records say why
a step failed; the tasks' timing records and the program runs' ``run.json`` give
durations — all under the storage root, so any machine pointed at it sees the same.
Which program variants a date ran comes from the RunModel timing records. With a luigid
URL, luigid's view (running, status message, progress, tracking URL) is merged in.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import luigi
import pandas as pd
import psutil

from pipeline import config, storage
from pipeline.errors import PipelineError
from pipeline.executors.attempts import run_records
from pipeline.layout import Layout
from pipeline.manifest import manifest_columns, read_manifest
from pipeline.status.luigid import merge_remote, scheduler_tasks
from pipeline.status.model import CohortStatus, RunStatus, StepStatus
from pipeline.steps import ROW, step_of
from pipeline.tasks import Deliver, IngestSurvey, RunModel, upstream
from pipeline.tasks.base import RunDateTask, compute_of, log_url
from pipeline.tasks.cleanse import known_cohorts
from pipeline.tasks.params import canonical_program
from pipeline.warehouse import open_warehouse


def collect(
    date: dt.date,
    *,
    cohorts: list[str] | None = None,
    programs: list[str] | None = None,
    warehouse: str = "",
    scheduler_url: str | None = None,
    publication: bool = True,
) -> RunStatus:
    """The status of every cohort × program of ``date`` from targets, failure and timing
    records, merged with luigid's view when ``scheduler_url`` is given. Without
    ``programs``: every program that ran for the date (else ``[pipeline] program``).
    ``publication=False`` skips the warehouse's sign-off records (a query, and
    the SQL transpiler's import, that ``pipeline run``'s summary does not show).

    On an ``s3://`` storage root what exists under the date is answered from one listing
    of it (``storage.listed``), and the records are read ``storage.READERS`` at a time: at 200
    cohorts that was 3,600 requests one after another (12-14 s on a loopback moto, minutes
    over the internet; docs/operations.md)."""
    layout = Layout.of(date)
    survey_task = IngestSurvey(run_date=date, warehouse=warehouse)
    warehouse = survey_task.warehouse
    with (
        storage.listed(layout.base),
        ThreadPoolExecutor(storage.READERS, thread_name_prefix="status") as pool,
    ):
        records = _timing_records(layout)
        # Which programs the date ran, when not told: from the RunModel records only.
        timings = {} if programs else _read_timings(records, "RunModel_", pool)
        chosen = [canonical_program(p) for p in programs or []] or _programs_run(timings)
        codes = list(cohorts or []) or list(known_cohorts(layout, str(config.raw_dir()))["code"])
        remote = scheduler_tasks(scheduler_url, layout.run_date) if scheduler_url else {}
        survey, *ends = Deliver(run_date=date, programs=chosen, warehouse=warehouse).ends(codes)
        # each program's results ingest of each cohort, and the steps it needs
        chains = [
            {_step_name(t): t for t in upstream(end) if step_of(t.task_family)} for end in ends
        ]
        models = [chain["model"] for chain in chains]
        runs = dict(zip([m.task_id for m in models], pool.map(last_run, models), strict=True))
        # a task several rows share (cleansing, a cohort's quality) is looked at once
        tasks = {t.task_id: t for chain in chains for t in chain.values()}
        tasks[survey.task_id] = survey
        # The records of these tasks only: a one-cohort run's summary read every record
        # of the date (1,400 at 200 cohorts x 2 programs).
        unread = {t: records[t] for t in tasks if t in records and t not in timings}
        timings.update(_read_timings(unread, "", pool))

        def status_of(task: RunDateTask) -> StepStatus:
            if isinstance(task, RunModel):
                return _model_step(task, timings, remote, runs[task.task_id])
            return _step(task, timings, remote)

        seen = dict(zip(tasks, pool.map(status_of, tasks.values()), strict=True))

        def row_of(end: RunDateTask, chain: dict[str, RunDateTask]) -> CohortStatus:
            model_task = chain["model"]
            row = CohortStatus(
                end.cohort,
                {name: seen[chain[name].task_id] for name in ROW},
                program=end.program,
                variant=model_task.spec.slug,
            )
            row.extra["manifest"] = run_manifest(model_task, runs[model_task.task_id])
            row.compute = compute_of(model_task.layout, model_task.cohort, model_task.spec)
            return row

        rows = list(pool.map(row_of, ends, chains))
        summary_uri = layout.cleanse_summary()
        summary = storage.read_json(summary_uri) if storage.exists(summary_uri) else None
        ran = bool(records) or storage.exists(layout.pin())
    if publication:
        _add_publication(rows, date, warehouse)
    return RunStatus(
        run_date=layout.run_date,
        work=layout.base,
        logs=layout.logs(),
        program=chosen[0],
        programs=chosen,
        warehouse=warehouse,
        survey_ingest=seen[survey.task_id],
        cohorts=rows,
        summary=summary,
        scheduler=scheduler_url,
        ran=ran,
    )


def _timing_records(layout: Layout) -> dict[str, str]:
    """Every task's timing record of the date: its URI by task id (one listing)."""
    return {
        uri.rsplit("/", 1)[-1].removesuffix(".json"): uri
        for uri in storage.listdir(layout.timings())
        if uri.endswith(".json")
    }


def _read_timings(
    records: dict[str, str], prefix: str, pool: ThreadPoolExecutor
) -> dict[str, dict[str, Any]]:
    """The timing records (``_timing_records``) of the task ids that start with ``prefix``,
    by task id; a record gone or unreadable by now is left out."""

    def read(uri: str) -> dict[str, Any] | None:
        try:
            return storage.read_json(uri)
        except (OSError, ValueError):
            return None

    uris = [uri for task_id, uri in records.items() if task_id.startswith(prefix)]
    return {str(r.get("task_id")): r for r in pool.map(read, uris) if r is not None}


def _programs_run(timings: dict[str, dict[str, Any]]) -> list[str]:
    """The programs the date's RunModel tasks ran with (the configured one first)."""
    default = canonical_program("")
    seen = {
        str(r["params"]["program"])
        for r in timings.values()
        if r.get("task_family") == "RunModel" and (r.get("params") or {}).get("program")
    }
    return sorted(seen, key=lambda p: (p != default, p)) if seen else [default]


def _add_publication(rows: list[CohortStatus], date: dt.date, warehouse: str) -> None:
    """Ingested / approved / published per cohort, from the warehouse's sign-off records."""
    try:
        published = open_warehouse(warehouse).publication_status(date)
    except PipelineError as exc:  # no warehouse yet, or it cannot be reached: say so
        unknown = "-" if "does not exist yet" in str(exc) else f"unknown ({exc})"
        for row in rows:
            row.extra["publication"] = unknown
        return
    by_cohort = {r["cohort"]: r for r in published.to_dict("records")}
    for row in rows:
        record = by_cohort.get(row.cohort)
        if record is None:
            row.extra["publication"] = "-"
            continue
        row.extra.update(
            {
                ("published_variant" if k == "variant" else k): (None if pd.isna(v) else v)
                for k, v in record.items()
                if k != "cohort"
            }
        )
        published = row.extra.get("published_variant")
        if published and published != row.variant and not pd.isna(record["published_at"]):
            row.extra["publication"] = f"variant {published} published ({record['approved_by']})"
        elif row.steps["ingest"].state != "done":
            # The cohort's record is another variant's load: this one is not in the warehouse.
            row.extra["publication"] = "-"
        elif pd.isna(record["published_at"]):
            row.extra["publication"] = "ingested, not approved"
        elif record["ingested_at"] > record["published_at"]:
            row.extra["publication"] = f"re-ingested after {record['approved_by']}'s approval"
        else:
            row.extra["publication"] = f"published ({record['approved_by']})"


def _step(
    task: RunDateTask,
    timings: dict[str, dict[str, Any]],
    remote: dict[str, dict[str, Any]],
) -> StepStatus:
    status = StepStatus(step=_step_name(task), task_id=task.task_id)
    record = timings.get(task.task_id, {})
    layout = task.layout
    status.started_at = record.get("started_at")
    status.finished_at = record.get("finished_at")
    status.seconds = record.get("seconds") or _seconds(status.started_at, status.finished_at)
    if record:
        status.log = log_url(layout.task_log(task.task_id))
    # A worker we can see is dead overrules luigid, which lists a killed worker's task as
    # RUNNING until it notices the worker is gone (worker_disconnect_delay).
    dead = (
        record.get("status") == "running"
        and record.get("host") == socket.gethostname()
        and not alive(record)
    )
    failure = None
    if task.complete():
        status.state = "done"
    elif record.get("status") == "running" and alive(record):
        status.state = "running"  # again, after an earlier failure perhaps
    elif storage.exists(layout.failure(task.task_id)):
        failure = _still_there(storage.read_bytes, layout.failure(task.task_id))
    if failure is not None:
        status.state = "failed"
        text = failure.decode(errors="replace")
        lines = text.strip().splitlines()
        status.error = lines[0] if lines else "failed"
        status.detail = "\n".join(lines[1:]) or None
    elif status.state == "pending" and record.get("status") == "running":
        status.message = (
            f"last seen running on {record.get('host')} (pid {record.get('pid')}) at "
            f"{record.get('started_at')}; that process is gone or not on this machine"
        )
    info = remote.get(task.task_id)
    if info:
        merge_remote(status, info, worker_dead=dead)
    return status


def _model_step(
    task: RunModel,
    timings: dict[str, dict[str, Any]],
    remote: dict[str, dict[str, Any]],
    run: dict[str, Any] | None,
) -> StepStatus:
    """``_step`` with what the program's last run (``last_run``) says."""
    status = _step(task, timings, remote)
    if run:
        status.executor = run.get("executor")
        status.started_at = run.get("started_at") or status.started_at
        status.finished_at = run.get("finished_at") or status.finished_at
        status.seconds = _seconds(run.get("started_at"), run.get("finished_at")) or status.seconds
        # The program's own log says more than the task's.
        if status.state != "done" or not status.log:
            status.log = run.get("tracking_url") or run.get("log_uri") or status.log
    return status


def last_run(task: RunModel) -> dict[str, Any] | None:
    """The final run.json when the model is done, else the latest attempt's, if any."""
    final = task.output()["run"].path
    if storage.exists(final) and (run := _still_there(storage.read_json, final)) is not None:
        return run
    runs = run_records(task.layout, task.cohort, task.spec, interrupted=False)
    return _still_there(storage.read_json, runs[-1]) if runs else None


def _still_there(read: Callable[[str], Any], uri: str) -> Any:
    """``read(uri)`` of a file the date's listing has, or None when it is gone by now: a
    status sees one moment of a run that goes on (a retry that succeeds removes its
    failure record, a rerun its outputs)."""
    try:
        return read(uri)
    except FileNotFoundError:
        return None


def run_manifest(task: RunModel, run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run manifest of the cohort's last program run (``run``: ``last_run``), as
    ``pipeline_runs`` holds it: attempt, fingerprint, params, rendered command, checksums,
    image, versions."""
    if not run:
        return None
    spec, attempt = task.spec, str(run.get("attempt") or "")
    manifest = read_manifest(task.layout, task.cohort, spec, attempt)
    return {
        "attempt": attempt,
        "status": run.get("status"),
        "program_fingerprint": spec.fingerprint,
        "variant": spec.slug,
        **manifest_columns(manifest, spec),
    }


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        delta = dt.datetime.fromisoformat(str(end)) - dt.datetime.fromisoformat(str(start))
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def alive(record: dict[str, Any]) -> bool:
    """True when the recorded worker process still runs on this host (a zombie — dead but
    not yet reaped by its parent — does not count)."""
    if record.get("host") != socket.gethostname():
        return False
    try:
        process = psutil.Process(int(record["pid"]))
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return False
        # The pid of a dead worker may belong to a newer process by now: the worker was
        # started before it recorded its start.
        started = dt.datetime.fromisoformat(str(record.get("started_at"))).timestamp()
        return process.create_time() <= started + 1.0
    except (KeyError, ValueError, TypeError, psutil.Error):
        return False


def _step_name(task: luigi.Task) -> str:
    step = step_of(task.task_family)
    if step is None:
        raise TypeError(f"{task.task_family} is no step of a delivery (pipeline.steps)")
    return step.name
