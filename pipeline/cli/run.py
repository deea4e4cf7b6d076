"""``pipeline run``: build one delivery (``Deliver``) with luigi and summarise it."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import luigi
import luigi.execution_summary
import luigi.retcodes

from pipeline import config, storage
from pipeline.console import RunConsole
from pipeline.errors import ConfigError
from pipeline.executors import EXECUTORS, preload
from pipeline.layout import spool_path
from pipeline.tasks import Deliver
from pipeline.tasks.params import (
    canonical_program,
    load_program,
    parse_overrides,
    with_overrides,
)
from pipeline.warehouse import connections, open_warehouse
from pipeline.worker import (
    AlreadyRunning,
    WorkerSchedulerFactory,
    interrupted_by_sigterm,
    take_run_lock,
)


def run_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def absolute_path(value: str) -> str:
    """A path argument, relative to the working directory (as people type it)."""
    return str(Path(value).expanduser().absolute())


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="run the whole pipeline for one run date",
        description="Cleanse the raw export, run the estimation program for every cohort in "
        "parallel, validate the results and load everything into the warehouse. This is the "
        "production runner: the daily schedule (terraform/modules/platform/luigid.tf) runs "
        '`sh -c \'fetch-raw "$PIPELINE_RAW_URI" && exec pipeline run --run-date '
        '"$(date -u +%F)" --executor ecs --scheduler-url http://luigid.<name>.internal:8082\'`. '
        "Through luigid, overlapping runs of a date share its tasks (each runs on one worker); "
        "with --local-scheduler a second run of the date refuses (exit 10). "
        "`luigi --module pipeline.tasks Deliver --run-date D` runs the same tasks for "
        "debugging, without that guard, the checks before work starts, the handling of a "
        "restarted luigid or the run's log on the storage root. Exits non-zero when any task "
        "failed (the exit codes of luigi.cfg [retcode]).",
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
        "--raw",
        type=absolute_path,
        help="raw export directory (default: [pipeline] raw or $PIPELINE_HOME/raw)",
    )
    parser.add_argument(
        "--program",
        action="append",
        type=absolute_path,
        metavar="SPEC",
        help="program spec TOML; repeat it to run variants side by side "
        "(default: [pipeline] program in luigi.cfg)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a [params] value of the program spec (repeatable; TOML values, e.g. "
        "bootstrap=30). Applies to every --program: the overridden spec is a variant of "
        "its own (new fingerprint). To compare, give the base and an overridden one: "
        "--program SPEC --program 'SPEC?bootstrap=30' (docs/variants.md)",
    )
    parser.add_argument(
        "--executor", choices=EXECUTORS, help="where programs run (default: [pipeline] executor)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=32,
        help="tasks that work at once, each in a thread of this process: cleansing, data "
        "checks, validation, ingest (default 32: in a cloud run they mostly wait for S3; "
        "200 cohorts reach their programs in 17 s with 32, 21 s with 16, docs/executors.md); "
        "program runs only wait and take none: "
        "[resources] model_slots bounds local programs, [ecs]/[batch] max_running cloud ones",
    )
    parser.add_argument(
        "--warehouse",
        help="duckdb:///path/file.duckdb or bigquery://PROJECT/DATASET "
        "(default: [pipeline] warehouse, else $PIPELINE_HOME/warehouse.duckdb)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show luigi's own log (DEBUG lines, tracebacks) live instead of the progress "
        "table; it always goes to the run's log file",
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


def scheduler_url(args: argparse.Namespace) -> str:
    return args.scheduler_url or (
        f"http://{config.get('core', 'scheduler_host', 'localhost')}:"
        f"{config.get('core', 'scheduler_port', '8082')}"
    )


def check_scheduler(url: str) -> None:
    """Refuse early when no luigid answers at ``url``."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "localhost", parsed.port or 8082
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        raise ConfigError(
            f"no luigid answers at {url}: start one with `make luigid`, pass --scheduler-url, "
            "or use --local-scheduler"
        ) from None


def programs_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The canonical programs of ``--program`` (default: [pipeline] program), each with
    the ``--param`` overrides."""
    overrides = parse_overrides(list(getattr(args, "param", None) or []))
    return tuple(
        dict.fromkeys(
            with_overrides(canonical_program(p), overrides) for p in (args.program or [""])
        )
    )


def build_delivery(args: argparse.Namespace) -> Deliver:
    """The ``Deliver`` task of these arguments, checked: every spec loads, the warehouse
    URI and the executor's storage are usable, the raw files match the date's pin and
    the cohorts exist. Nothing is written."""
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    deliver = Deliver(
        run_date=args.run_date,
        cohorts=tuple(dict.fromkeys(args.cohort)),
        programs=programs_of(args),
        executor=args.executor or "",
        warehouse=args.warehouse or "",
        raw=args.raw or "",
    )
    for program in deliver.programs:
        load_program(program)  # a malformed spec fails here, with its file and key
    open_warehouse(deliver.warehouse)
    if deliver.executor != "local":
        check_cloud(deliver.executor)
    deliver.preflight()
    return deliver


def check_cloud(executor: str) -> None:
    """A cloud executor needs S3 storage, valid ``[ecs]``/``[batch]`` settings and AWS
    credentials: refuse before anything runs rather than fail every cohort."""
    from pipeline.executors.cloud import require_s3_root  # boto3: cloud runs only

    require_s3_root(executor)
    if executor == "ecs":
        from pipeline.executors.ecs import EcsSettings

        EcsSettings.from_config()
    else:
        from pipeline.executors.batch import BatchSettings

        BatchSettings.from_config()
    import boto3

    if boto3.session.Session().get_credentials() is None:
        raise ConfigError(
            f"the {executor} executor needs AWS credentials and none were found (environment, "
            "~/.aws, or an instance/task role): set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, or run where a role provides them"
        )


@contextlib.contextmanager
def run_lock(deliver: Deliver) -> Iterator[None]:
    """One local run of a run date at a time per storage root, whatever its command line:
    a second one refuses (exit code ``already_running``) instead of running programs twice.
    (With luigid, luigid itself gives each task to one worker; ``pipeline assist`` holds
    the same lock while it runs a task of the date.)"""
    layout = deliver.layout
    fh = take_run_lock(layout.run_lock(), "pipeline run", layout.run_date, layout.root)
    try:
        yield
    finally:
        fh.close()


class LogUploader:
    """Copies luigi's log of this run from its local spool file to its object on an S3
    storage root every ``interval`` seconds (``[run] log_upload_interval``) and once more
    at the end, from a daemon thread: an orchestrator killed mid-run (OOM, a stopped ECS
    task) leaves the log up to its last upload, there to say why. Every upload replaces
    the whole object (an S3 put is atomic: a reader sees one upload or the next, never
    half of one) and, but for the last, ends at the last whole line; an unchanged file is
    not uploaded again. A failed upload is retried at the next tick and never stops the
    run."""

    def __init__(self, local: Path, uri: str, interval: float) -> None:
        self.local, self.uri, self.interval = local, uri, interval
        self.error = ""  # the last upload's error, if it failed
        self._uploaded = -1  # size of the file at the last upload
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-log-upload", daemon=True)

    def __enter__(self) -> LogUploader:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(self.interval, 30.0))
        self.upload(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.upload()

    def upload(self, final: bool = False) -> None:
        with self._lock:
            try:
                data = self.local.read_bytes()
            except OSError:
                return  # nothing logged yet
            if not final:  # a line being written as we read stays for the next upload
                data = data[: data.rfind(b"\n") + 1]
            if not data or len(data) == self._uploaded:
                return
            try:
                storage.write_bytes(self.uri, data)
            except Exception as exc:  # the next tick tries again; the run goes on
                self.error = f"{type(exc).__name__}: {exc}"
            else:
                self._uploaded, self.error = len(data), ""


def log_upload_interval() -> float:
    """``[run] log_upload_interval``: seconds between uploads of the run's log to an S3
    storage root (0 = only when the run ends)."""
    return max(config.get_float("run", "log_upload_interval", 30.0), 0.0)


def execute(deliver: Deliver, args: argparse.Namespace, console: RunConsole) -> int:
    """Run ``deliver`` with luigi's scheduler (local or luigid) and ``PipelineWorker``,
    showing progress on ``console``; returns the ``[retcode]`` exit code."""
    preload(deliver.executor)
    env: dict[str, object] = {"workers": args.workers}
    if args.local_scheduler:
        env["local_scheduler"] = True
    else:
        url = scheduler_url(args)
        check_scheduler(url)
        env["scheduler_url"] = url
    with interrupted_by_sigterm(), console.capturing():
        result = luigi.build(
            [deliver],
            # A task found or made complete stays so for the run (rerun removes outputs
            # before it builds): luigi's check of a task's dependencies just before it
            # runs then costs no request for those (4 HEADs per cohort's data check on S3).
            worker_scheduler_factory=WorkerSchedulerFactory(
                observer=console, cache_completions=True
            ),
            detailed_summary=True,
            **env,
        )
    return exit_code(result)


def exit_code(result: luigi.execution_summary.LuigiRunResult) -> int:
    """luigi's ``[retcode]`` rules (as ``luigi --module`` applies them) for one run."""
    codes = luigi.retcodes.retcode()
    sets = luigi.execution_summary._summary_dict(result.worker)
    root = luigi.execution_summary._root_task(result.worker)
    present = {name for name, tasks in sets.items() if tasks}
    code = max(
        [
            codes.missing_data * ("still_pending_ext" in present),
            codes.task_failed * ("failed" in present),
            codes.already_running * ("run_by_other_worker" in present),
            codes.scheduling_error * ("scheduling_error" in present),
            codes.not_run * ("not_run" in present),
        ]
    )
    if code == 0 and root not in sets["completed"] and root not in sets["already_done"]:
        code = codes.not_run
    if code in (codes.not_run, codes.already_running) and root.complete():
        return 0  # an overlapping run (another worker) finished what this one left to it
    return code


def main(args: argparse.Namespace) -> int:
    deliver = build_delivery(args)
    started = time.monotonic()
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    log_uri = deliver.layout.run_log(stamp)
    local_log = spool_path(log_uri)
    console = RunConsole(
        local_log, verbose=getattr(args, "verbose", False), variants=len(deliver.programs) > 1
    )
    # One DuckDB connection for the run's loads and its summary, whose warehouse counts
    # then need no second opening of the file (closed, and checkpointed, at the end).
    with connections.shared():
        uploader = None
        try:
            with contextlib.ExitStack() as stack:
                if storage.is_s3(log_uri):
                    uploader = stack.enter_context(
                        LogUploader(local_log, log_uri, log_upload_interval())
                    )
                if args.local_scheduler:
                    stack.enter_context(run_lock(deliver))
                print(
                    f"Run {deliver.run_date} of {len(deliver.preflight())} cohort(s) × "
                    f"{len(deliver.programs)} program(s) on {deliver.executor}; log: {log_uri}",
                    flush=True,
                )
                code = execute(deliver, args, console)
        except AlreadyRunning as exc:
            print(f"pipeline run: {exc}", file=sys.stderr)
            return luigi.retcodes.retcode().already_running
        if uploader is not None and uploader.error:
            print(
                f"pipeline run: could not upload the run's log: {uploader.error}", file=sys.stderr
            )
        print_summary(deliver, seconds=time.monotonic() - started, code=code, log=log_uri)
    return code


def print_summary(
    deliver: Deliver, *, seconds: float, code: int, log: str = "", out=sys.stdout
) -> None:
    """Cohorts done/failed, rows cleansed/rejected by reason, where results and logs are."""
    from pipeline.status import collect  # imports every task: only once a run is over
    from pipeline.status.table import cost_lines

    status = collect(
        deliver.run_date,
        cohorts=list(deliver.cohorts) or None,
        programs=list(deliver.programs),
        warehouse=deliver.warehouse,
        publication=False,
    )
    lines = [f"\nRun {status.run_date} ({deliver.executor} executor, {seconds:.1f}s)"]
    summary = status.summary
    if summary:
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
    cleanse = status.cohorts[0].steps["cleanse"] if status.cohorts else None
    if cleanse is not None and cleanse.state == "failed":
        lines.append(f"  cleansing FAILED: {cleanse.error}")
    variants = len(status.programs) > 1
    counts = {"done": 0, "failed": 0, "not run": 0}
    rows = []
    for row in status.cohorts:
        name = status.name(row)
        failed = next((s for s in row.steps.values() if s.state == "failed"), None)
        if row.state == "done":
            counts["done"] += 1
            rows.append(f"  {name:<20} done")
        elif failed is not None and failed.step != "cleanse":
            counts["failed"] += 1
            rows.append(f"  {name:<20} FAILED at {failed.step}: {failed.error}")
            tail = [line.strip() for line in (failed.detail or "").splitlines() if line.strip()]
            rows += [f"      {line}" for line in tail[-6:]]
        else:
            counts["not run"] += 1
            pending = next((s.step for s in row.steps.values() if s.state != "done"), "")
            rows.append(f"  {name:<20} not run (waiting at {pending})")
    lines.append(
        f"  cohorts: {counts['done']} done, {counts['failed']} failed"
        + (f", {counts['not run']} not run" if counts["not run"] else "")
        + (f" ({len(status.cohorts) // len(status.programs)} cohorts × "
           f"{len(status.programs)} variants)" if variants else "")
    )  # fmt: skip
    if variants:
        slugs = {row.program: row.variant for row in status.cohorts}
        lines += [f"  variant {slugs.get(p, '?')}: {p}" for p in status.programs]
    lines += rows
    lines += [f"  {line}" for line in cost_lines(status)]
    if code == luigi.retcodes.retcode().already_running:
        lines.append("  some tasks were running in another worker: they were not run here")
    survey_loaded = status.survey_ingest.state == "done"
    lines.append(
        f"  warehouse: {status.warehouse}" + ("" if survey_loaded else " (survey not loaded)")
    )
    lines.append(f"  work: {status.work}")
    lines.append(f"  logs: {status.logs}")
    if log:
        lines.append(f"  luigi's log of this run: {log}")
    print("\n".join(lines), file=out)
