"""``pipeline status``: where a run date stands, cohort by cohort and step by step.

The targets are the truth (a step is done iff its outputs exist); failure files say why
a step failed; the tasks' timing records (``logs/<date>/tasks/*.json``) and the program
runs' ``run.json`` give durations. Without luigid this already answers everything but
"is it running right now on another machine"; with ``--scheduler-url`` luigid's view
(running, pending, status message, progress, tracking URL) is merged in.

Columns are a list of ``Column``; adding one (e.g. publication status) is one entry.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import psutil

from pipeline import config, storage
from pipeline.cli.run import run_date
from pipeline.errors import PipelineError
from pipeline.tasks import CleanseSurvey, IngestResults, IngestSurvey, RunModel, ValidateResults
from pipeline.tasks.base import RunDateTask, log_url, program_path, warehouse_uri
from pipeline.tasks.cleanse import known_cohorts
from pipeline.warehouse import open_warehouse

STEPS = ("cleanse", "model", "validate", "ingest")
STATES = ("done", "failed", "running", "pending")


@dataclass
class StepStatus:
    """One step of one cohort (or of the whole date: cleanse, survey ingest)."""

    step: str
    task_id: str
    state: str = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    executor: str | None = None
    error: str | None = None
    log: str | None = None
    message: str | None = None  # luigid's status message
    progress: float | None = None  # luigid's progress percentage


@dataclass
class CohortStatus:
    cohort: str
    steps: dict[str, StepStatus]
    extra: dict[str, Any] = field(default_factory=dict)  # columns added by other modules

    @property
    def state(self) -> str:
        states = [s.state for s in self.steps.values()]
        for state in ("failed", "running"):
            if state in states:
                return state
        return "done" if all(s == "done" for s in states) else "pending"

    @property
    def executor(self) -> str | None:
        return self.steps["model"].executor


@dataclass
class RunStatus:
    run_date: str
    work: str
    logs: str
    program: str
    warehouse: str
    survey_ingest: StepStatus
    cohorts: list[CohortStatus]
    summary: dict[str, Any] | None = None  # cleansing summary.json, once cleansed
    scheduler: str | None = None  # luigid URL when it was asked

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cohorts"] = [
            {"cohort": c.cohort, "state": c.state, "executor": c.executor, **c.extra,
             "steps": {k: asdict(v) for k, v in c.steps.items()}}
            for c in self.cohorts
        ]  # fmt: skip
        return data


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="show the state of every cohort and step of a run date",
        description="Cohorts × steps (cleanse, model, validate, ingest) with state, duration, "
        "executor and, for failures, the error line and the log. Reads the targets and "
        "failure files; with --scheduler-url also asks luigid what is running.",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--cohort", action="append", default=[], metavar="CODE", help="only this cohort"
    )
    parser.add_argument("--program", help="program spec TOML (default: [pipeline] program)")
    parser.add_argument("--warehouse", help="warehouse URI (default: [pipeline] warehouse)")
    parser.add_argument("--scheduler-url", help="luigid to ask, e.g. http://localhost:8082")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    status = collect(
        args.run_date,
        cohorts=args.cohort,
        program=args.program or "",
        warehouse=args.warehouse or "",
        scheduler_url=args.scheduler_url,
    )
    if args.json:
        json.dump(status.to_json(), sys.stdout, indent=2, default=str)
        print()
    else:
        print(render(status))
    return 0


# -- collecting --------------------------------------------------------------------------


def collect(
    date: dt.date,
    *,
    cohorts: list[str] | None = None,
    program: str = "",
    warehouse: str = "",
    scheduler_url: str | None = None,
) -> RunStatus:
    """The status of every cohort of ``date`` (or of ``cohorts``) from targets, failure
    files and timing records, merged with luigid's view when ``scheduler_url`` is given."""
    iso = date.isoformat()
    program = program_path(program)
    warehouse = warehouse_uri(warehouse)
    codes = list(cohorts or []) or list(known_cohorts(iso)["code"])
    remote = _scheduler_tasks(scheduler_url, iso) if scheduler_url else {}
    cleanse_task = CleanseSurvey(run_date=date)
    cleanse = _step("cleanse", cleanse_task, remote)
    survey = _step("ingest_survey", IngestSurvey(run_date=date, warehouse=warehouse), remote)
    rows = []
    for code in codes:
        common = {"run_date": date, "cohort": code, "program": program}
        model_task = RunModel(**common)
        steps = {
            "cleanse": cleanse,
            "model": _model_step(model_task, remote),
            "validate": _step("validate", ValidateResults(**common), remote),
            "ingest": _step("ingest", IngestResults(**common, warehouse=warehouse), remote),
        }
        rows.append(CohortStatus(code, steps))
    _add_publication(rows, date, warehouse)
    summary_uri = cleanse_task.path("cleanse", "summary.json")
    return RunStatus(
        run_date=iso,
        work=storage.join(config.storage_root(), iso),
        logs=str(config.logs_dir() / iso),
        program=program,
        warehouse=warehouse,
        survey_ingest=survey,
        cohorts=rows,
        summary=storage.read_json(summary_uri) if storage.exists(summary_uri) else None,
        scheduler=scheduler_url,
    )


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
            {k: (None if pd.isna(v) else v) for k, v in record.items() if k != "cohort"}
        )
        if pd.isna(record["published_at"]):
            row.extra["publication"] = "ingested, not approved"
        elif record["ingested_at"] > record["published_at"]:
            row.extra["publication"] = f"re-ingested after {record['approved_by']}'s approval"
        else:
            row.extra["publication"] = f"published ({record['approved_by']})"


def timing(task: RunDateTask) -> dict[str, Any]:
    """The task's last execution record (empty when it never ran here)."""
    try:
        return json.loads(task.timing_file().read_text())
    except (OSError, ValueError):
        return {}


def _step(step: str, task: RunDateTask, remote: dict[str, dict[str, Any]]) -> StepStatus:
    status = StepStatus(step=step, task_id=task.task_id)
    record = timing(task)
    status.started_at = record.get("started_at")
    status.finished_at = record.get("finished_at")
    status.seconds = record.get("seconds") or _seconds(status.started_at, status.finished_at)
    log = task.task_log()
    status.log = log_url(log) if log.exists() else None
    failure = task.failure_file()
    if task.complete():
        status.state = "done"
    elif record.get("status") == "running" and _alive(record):
        status.state = "running"  # again, after an earlier failure perhaps
    elif failure.exists():
        status.state = "failed"
        lines = failure.read_text(errors="replace").strip().splitlines()
        status.error = lines[0] if lines else "failed"
        status.log = status.log or str(failure)
    info = remote.get(task.task_id)
    if info:
        _merge_remote(status, info)
    return status


def _model_step(task: RunModel, remote: dict[str, dict[str, Any]]) -> StepStatus:
    status = _step("model", task, remote)
    run = _last_run(task)
    if run:
        status.executor = run.get("executor")
        status.started_at = run.get("started_at") or status.started_at
        status.finished_at = run.get("finished_at") or status.finished_at
        status.seconds = _seconds(run.get("started_at"), run.get("finished_at")) or status.seconds
        # The program's own log says more than the task's.
        if status.state != "done" or not status.log:
            status.log = run.get("tracking_url") or run.get("log_uri") or status.log
    return status


def _last_run(task: RunModel) -> dict[str, Any] | None:
    """The final run.json when the model is done, else the latest attempt's, if any."""
    final = task.output()["run"].path
    if storage.exists(final):
        return storage.read_json(final)
    attempts = storage.join(task.path(*task.model_dir()), "attempts")
    runs = [uri for uri in storage.listdir(attempts) if uri.endswith("/run.json")]
    return storage.read_json(runs[-1]) if runs else None


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        delta = dt.datetime.fromisoformat(str(end)) - dt.datetime.fromisoformat(str(start))
    except ValueError:
        return None
    return round(delta.total_seconds(), 3)


def _alive(record: dict[str, Any]) -> bool:
    """True when the recorded worker process still runs on this host."""
    if record.get("host") != socket.gethostname():
        return False
    try:
        return psutil.Process(int(record["pid"])).is_running()
    except (KeyError, ValueError, psutil.Error):
        return False


def _merge_remote(status: StepStatus, info: dict[str, Any]) -> None:
    remote_state = str(info.get("status", "")).upper()
    if status.state != "done":
        if remote_state in ("RUNNING", "BATCH_RUNNING"):
            status.state = "running"
        elif remote_state == "FAILED" and status.state == "pending":
            status.state = "failed"
    status.executor = status.executor or (info.get("params") or {}).get("executor") or None
    status.message = info.get("status_message") or None
    status.progress = info.get("progress_percentage")
    status.log = info.get("tracking_url") or status.log
    if status.state == "running" and info.get("time_running"):
        started = dt.datetime.fromtimestamp(float(info["time_running"]), dt.UTC)
        status.started_at = started.isoformat()
        status.seconds = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)


def _scheduler_tasks(url: str, iso: str) -> dict[str, dict[str, Any]]:
    """luigid's tasks whose id mentions the run date, by task id (empty if unreachable)."""
    query = urllib.parse.urlencode({"data": json.dumps({"task_str": iso.replace("-", "_")})})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/task_search?{query}", timeout=10) as r:
            response = json.load(r)["response"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"pipeline status: luigid at {url} not reachable ({exc}); "
              "showing targets only", file=sys.stderr)  # fmt: skip
        return {}
    return {task_id: info for tasks in response.values() for task_id, info in tasks.items()}


# -- rendering ---------------------------------------------------------------------------


def cell(step: StepStatus) -> str:
    text = step.state
    if step.seconds is not None and step.state != "pending":
        text += f" {_duration(step.seconds)}"
    if step.state == "running" and step.progress is not None:
        text += f" {step.progress:.0f}%"
    return text


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[CohortStatus], str]


COLUMNS: list[Column] = [
    Column("cohort", lambda c: c.cohort),
    *(Column(step, lambda c, step=step: cell(c.steps[step])) for step in STEPS),
    Column("executor", lambda c: c.executor or "-"),
    Column("publication", lambda c: c.extra.get("publication", "-")),
]


def render(status: RunStatus) -> str:
    """A text table of cohorts × steps, then one block per failure (error line, log)."""
    lines = [f"Run {status.run_date}   work: {status.work}   logs: {status.logs}"]
    if status.summary:
        s = status.summary
        lines.append(
            f"cleansing: {s['raw_rows']:,} raw rows -> {s['cleansed_rows']:,} cleansed, "
            f"{s['rejected_rows']:,} rejected"
        )
    lines.append(f"survey ingest: {cell(status.survey_ingest)}")
    table = [[col.header for col in COLUMNS]] + [
        [col.value(c) for col in COLUMNS] for c in status.cohorts
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines.append("")
    for row in table:
        lines.append("  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip())
    failures = [
        (c.cohort, step) for c in status.cohorts for step in c.steps.values()
        if step.state == "failed" and step.step != "cleanse"
    ]  # fmt: skip
    problems = [("(all)", status.cohorts[0].steps["cleanse"])] if (
        status.cohorts and status.cohorts[0].steps["cleanse"].state == "failed"
    ) else []  # fmt: skip
    if status.survey_ingest.state == "failed":
        problems.append(("(survey)", status.survey_ingest))
    for cohort, step in problems + failures:
        lines += ["", f"{cohort} {step.step} FAILED: {step.error or step.message or ''}"]
        if step.log:
            lines.append(f"    log: {step.log.removeprefix('file://')}")
    counts = {state: sum(c.state == state for c in status.cohorts) for state in STATES}
    lines += ["", "cohorts: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)]
    return "\n".join(lines)
