"""``pipeline run``: build one delivery (``Deliver``) with luigi and summarise it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import sys
import time
from urllib.parse import urlparse

import luigi.retcodes

from pipeline import config, storage
from pipeline.core.spec import load_spec
from pipeline.errors import ConfigError, InputError
from pipeline.executors import EXECUTORS
from pipeline.tasks import IngestResults, IngestSurvey, RunModel, ValidateResults
from pipeline.tasks.base import executor_name, program_path, warehouse_uri
from pipeline.tasks.cleanse import check_pinned, known_cohorts
from pipeline.warehouse import open_warehouse


def run_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="run the whole pipeline for one run date",
        description="Cleanse the raw export, run the estimation program for every cohort in "
        "parallel, validate the results and load everything into the warehouse. Exits "
        "non-zero when any task failed (the exit codes of luigi.cfg [retcode]).",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--cohort",
        action="append",
        default=[],
        metavar="CODE",
        help="run only this cohort (repeatable; default: every cohort in cohorts.csv)",
    )
    add_run_options(parser)
    parser.set_defaults(func=main)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of how to run (shared with ``pipeline rerun``)."""
    parser.add_argument(
        "--raw", help="raw export directory (default: [pipeline] raw or $PIPELINE_HOME/raw)"
    )
    parser.add_argument(
        "--program", help="program spec TOML (default: [pipeline] program in luigi.cfg)"
    )
    parser.add_argument(
        "--executor", choices=EXECUTORS, help="where programs run (default: [pipeline] executor)"
    )
    parser.add_argument("--workers", type=int, default=4, help="luigi worker processes (default 4)")
    parser.add_argument(
        "--warehouse",
        help="duckdb:///path/file.duckdb or bigquery://PROJECT/DATASET "
        "(default: [pipeline] warehouse, else $PIPELINE_HOME/warehouse.duckdb)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--local-scheduler",
        action="store_true",
        help="schedule in this process instead of talking to luigid",
    )
    where.add_argument(
        "--scheduler-url",
        help="luigid to use, e.g. http://localhost:8082 (default: luigi.cfg [core])",
    )


def _check_scheduler(url: str) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "localhost", parsed.port or 8082
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        raise ConfigError(
            f"no luigid answers at {url}: start one with `make luigid`, pass --scheduler-url, "
            "or use --local-scheduler"
        ) from None


def main(args: argparse.Namespace) -> int:
    if args.raw:
        config.set_override("pipeline", "raw", str(args.raw))
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    date = args.run_date.isoformat()
    program = program_path(args.program or "")
    load_spec(program)  # a malformed spec fails here, with its file and key
    executor = executor_name(args.executor or "")
    warehouse = warehouse_uri(args.warehouse or "")
    open_warehouse(warehouse)
    raw = config.raw_dir()
    cleansed = storage.exists(storage.join(config.storage_root(), date, "cleanse", "summary.json"))
    if not cleansed and not raw.is_dir():
        raise InputError("raw directory does not exist", file=str(raw))
    check_pinned(date)
    known = list(known_cohorts(date)["code"])
    unknown = [c for c in args.cohort if c not in known]
    if unknown:
        raise InputError(
            f"unknown --cohort {', '.join(unknown)} (known: {', '.join(known)})",
            file=str(raw / "cohorts.csv"),
        )
    luigi_args = [
        "--module", "pipeline.tasks", "Deliver",
        "--run-date", date,
        "--program", program,
        "--executor", executor,
        "--warehouse", warehouse,
        "--cohorts", json.dumps(args.cohort),
        "--workers", str(args.workers),
    ]  # fmt: skip
    if args.local_scheduler:
        luigi_args.append("--local-scheduler")
    else:
        url = args.scheduler_url or (
            f"http://{config.get('core', 'default_scheduler_host', 'localhost')}:"
            f"{config.get('core', 'default_scheduler_port', '8082')}"
        )
        _check_scheduler(url)
        luigi_args += ["--scheduler-url", url]
    started = time.monotonic()
    try:
        luigi.retcodes.run_with_retcodes(luigi_args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    print_summary(
        args.run_date,
        args.cohort or known,
        program=program,
        executor=executor,
        warehouse=warehouse,
        seconds=time.monotonic() - started,
    )
    return code


def _first_incomplete(tasks: list[luigi.Task]) -> luigi.Task | None:
    return next((t for t in tasks if not t.complete()), None)


def print_summary(
    date: dt.date,
    cohorts: list[str],
    *,
    program: str,
    executor: str,
    warehouse: str,
    seconds: float,
    out=sys.stdout,
) -> None:
    """Cohorts done/failed, rows cleansed/rejected by reason, where results and logs are."""
    iso = date.isoformat()
    lines = [f"\nRun {iso} ({executor} executor, {seconds:.1f}s)"]
    summary_uri = storage.join(config.storage_root(), iso, "cleanse", "summary.json")
    if storage.exists(summary_uri):
        summary = storage.read_json(summary_uri)
        reasons = ", ".join(
            f"{reason} {count:,}"
            for reason, count in sorted(
                summary["rejections_by_reason"].items(), key=lambda kv: -kv[1]
            )
            if count
        )
        lines.append(
            f"  rows: {summary['raw_rows']:,} raw -> {summary['cleansed_rows']:,} cleansed, "
            f"{summary['rejected_rows']:,} rejected" + (f" ({reasons})" if reasons else "")
        )
    survey = IngestSurvey(run_date=date, warehouse=warehouse)
    steps_done = 0
    rows = []
    for code in cohorts:
        common = {"run_date": date, "cohort": code, "program": program, "executor": executor}
        chain = [
            RunModel(**common),
            ValidateResults(**common),
            IngestResults(**common, warehouse=warehouse),
        ]
        failed = _first_incomplete(chain)
        if failed is None:
            steps_done += 1
            rows.append(f"  {code:<20} done")
            continue
        failure = failed.failure_file()
        why = failure.read_text().splitlines()[0] if failure.exists() else "not run"
        rows.append(f"  {code:<20} FAILED at {failed.task_family}: {why}")
    done_cleanse = survey.requires().complete()
    if not done_cleanse:
        failure = survey.requires().failure_file()
        why = failure.read_text().splitlines()[0] if failure.exists() else "not run"
        lines.append(f"  cleansing FAILED: {why}")
    lines.append(f"  cohorts: {steps_done} done, {len(cohorts) - steps_done} failed")
    lines += rows
    lines.append(
        f"  warehouse: {warehouse}" + ("" if survey.complete() else " (survey not loaded)")
    )
    lines.append(f"  work: {storage.join(config.storage_root(), iso)}")
    lines.append(f"  logs: {config.logs_dir() / iso}")
    print("\n".join(lines), file=out)
