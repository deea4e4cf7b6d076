"""The life of one program attempt around an executor: prepare, then collect.

``prepare`` gives the attempt an id and a directory under the cohort's model directory,
hands the program its input (the cleansed Parquet, or a CSV copy when the spec asks for
CSV) and writes the typed job document the wrapper reads. ``collect`` records how the
attempt ended (``attempts/<id>/run.json``), checks that the program wrote its results,
and writes the cohort's ``results.parquet`` and ``run.json`` — the RunModel targets.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline import config, storage
from pipeline.core.job import JobDocument
from pipeline.core.spec import ProgramSpec
from pipeline.errors import InputError, ProgramFailed
from pipeline.executors.base import Job, RunRecord, tail_lines
from pipeline.layout import Layout

# attempts/<id>/run.json "status": how the attempt ended. A cloud task the service ended
# under it (a Fargate Spot interruption, a lost host) and that the executor resubmitted is
# recorded as abandoned, in attempts/<id>/abandoned/<n>.json.
SUCCEEDED, FAILED, ABANDONED = "succeeded", "failed", "abandoned"


@dataclass(frozen=True)
class Prepared:
    """An attempt ready to run: what the executor runs and where its log belongs."""

    job: Job
    rows: int  # cleansed rows handed to the program
    log_uri: str  # the program log under the storage root (== job.log_path when local)


def new_attempt_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def prepare(layout: Layout, cohort: str, spec: ProgramSpec) -> Prepared:
    """Write the attempt's job document (and CSV input if the spec wants one)."""
    input_uri = layout.cohort_input(cohort)
    if not storage.exists(input_uri):
        raise InputError(f"cohort {cohort!r} is not in this run date's cohorts.csv", file=input_uri)
    if spec.input_format == "csv":
        cleansed = pq.read_table(io.BytesIO(storage.read_bytes(input_uri)))
        rows = cleansed.num_rows
    else:
        rows = pq.read_metadata(io.BytesIO(storage.read_bytes(input_uri))).num_rows
    if rows == 0:
        raise InputError(
            f"no cleansed responses for cohort {cohort!r}: every row was rejected or none "
            "was delivered (see rejections.parquet)",
            file=input_uri,
        )
    attempt = new_attempt_id()
    program_input = input_uri
    if spec.input_format == "csv":
        program_input = layout.attempt(cohort, spec.slug, attempt, "input.csv")
        storage.write_bytes(program_input, cleansed.to_pandas().to_csv(index=False).encode())
    document = JobDocument(
        spec=spec,
        run_date=layout.run_date,
        cohort=cohort,
        attempt=attempt,
        input=program_input,
        frame=layout.cleanse("frame.csv"),
        output=layout.attempt(cohort, spec.slug, attempt, "out"),
    )
    job_uri = layout.attempt(cohort, spec.slug, attempt, "job.json")
    storage.write_json(job_uri, document.to_dict())
    log_uri = layout.program_log(cohort, spec.slug, attempt)
    log_path = (
        config.local_logs_dir() / "spool" / log_uri.removeprefix("s3://")
        if storage.is_s3(log_uri)
        else Path(log_uri)
    )
    job = Job(
        run_date=layout.run_date,
        cohort=cohort,
        spec=spec,
        attempt=attempt,
        job_uri=job_uri,
        output_uri=document.output,
        log_path=log_path,
    )
    return Prepared(job=job, rows=rows, log_uri=log_uri)


def publish_log(prepared: Prepared) -> None:
    """Copy a spooled program log to the storage root (a local root already holds it)."""
    path = prepared.job.log_path
    if storage.is_s3(prepared.log_uri) and path.exists():
        storage.write_bytes(prepared.log_uri, path.read_bytes())


def run_row(job: Job, record: RunRecord, status: str) -> dict[str, Any]:
    """One ``pipeline_runs`` row: the executor's record plus the program's identity."""
    return {
        **record.to_dict(),
        "program_name": job.spec.name,
        "program_version": job.spec.version,
        "program_fingerprint": job.spec.fingerprint,
        "status": status,
    }


def collect(layout: Layout, prepared: Prepared, record: RunRecord) -> pd.DataFrame:
    """Record the attempt and, when it succeeded, write the cohort's results and run
    record; raises ``ProgramFailed`` with the log tail when it did not."""
    job = prepared.job
    spec, cohort = job.spec, job.cohort
    attempt_run = layout.attempt(cohort, spec.slug, job.attempt, "run.json")
    for n, interrupted in enumerate(record.interrupted, start=1):
        storage.write_json(
            layout.attempt(cohort, spec.slug, job.attempt, "abandoned", f"{n}.json"),
            run_row(job, interrupted, ABANDONED),
        )
    if record.exit_code != 0:
        storage.write_json(attempt_run, run_row(job, record, FAILED))
        tail = "\n".join(f"    {line}" for line in record.error.splitlines()[-20:])
        # A cloud task that never ran its container (e.g. the image could not be pulled)
        # has no exit code; the error's last line says why.
        ended = (
            f"exited with {record.exit_code}"
            if record.exit_code is not None
            else "ended without an exit code"
        )
        raise ProgramFailed(
            f"{spec.name} {spec.version} for cohort {cohort} {ended} on {record.executor} "
            f"({record.job_id}); log: {prepared.log_uri}"
            + (f"\n  last lines:\n{tail}" if tail else "")
        )
    results_uri = storage.join(job.output_uri, spec.results)
    problem = ""
    results = pd.DataFrame()
    if not storage.exists(results_uri):
        problem = f"exited 0 but wrote no {spec.results} (outputs.results) under {job.output_uri}"
    else:
        try:
            results = storage.read_table(results_uri)
        except ValueError as exc:
            problem = f"wrote unreadable results {results_uri}: {exc}"
    if problem:
        storage.write_json(attempt_run, run_row(job, record, FAILED))
        tail = "\n".join(f"    {line}" for line in tail_lines(job.log_path, 20))
        raise ProgramFailed(
            f"{spec.name} {spec.version} for cohort {cohort} {problem}; log: {prepared.log_uri}"
            + (f"\n  last lines:\n{tail}" if tail else "")
        )
    row = run_row(job, record, SUCCEEDED)
    storage.write_json(attempt_run, row)
    storage.write_parquet(layout.model(cohort, spec.slug, "results.parquet"), results)
    storage.write_json(layout.model(cohort, spec.slug, "run.json"), row)
    return results
