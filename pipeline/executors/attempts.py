"""The life of one program attempt around an executor: prepare, then collect.

``prepare`` gives the attempt an id and a directory under the cohort's model directory,
hands the program its input (the cleansed Parquet, or a CSV copy when the spec asks for
CSV) and writes the typed job document the wrapper reads. ``collect`` records how the
attempt ended (``attempts/<id>/run.json``), checks that the program wrote its results,
and writes the cohort's ``results.parquet`` and ``run.json`` — the RunModel targets.

Restarts never throw finished compute away (docs/operations.md, "Restarting"):
``find_finished`` returns an earlier attempt of the same cohort and spec whose wrapper
wrote a manifest with exit code 0 and whose results file still has the manifest's
sha256; ``RunModel`` collects it instead of running the program again. ``resume``
rebuilds the ``Prepared`` of an attempt whose cloud task is still running, so the
executor can re-attach to it. Every other attempt ends with a ``run.json`` too:
``abandon_unfinished`` / ``collect`` record attempts that never finished, and
successful ones another attempt superseded, as ``abandoned`` — so ``pipeline_runs``
holds one ``succeeded`` row per cohort's delivered results.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline import faults, storage
from pipeline.core.job import JobDocument
from pipeline.core.spec import ProgramSpec
from pipeline.errors import InputError, PipelineError, ProgramFailed
from pipeline.executors.base import ON_DEMAND, Job, RunRecord, estimate_cost, tail_lines
from pipeline.layout import Layout, spool_path

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


def _cohort_rows(layout: Layout, cohort: str) -> int:
    input_uri = layout.cohort_input(cohort)
    if not storage.exists(input_uri):
        return 0
    return pq.read_metadata(io.BytesIO(storage.read_bytes(input_uri))).num_rows


def _job(layout: Layout, cohort: str, spec: ProgramSpec, attempt: str) -> tuple[Job, str]:
    """The executor's ``Job`` of an attempt and its log URI under the storage root."""
    log_uri = layout.program_log(cohort, spec.slug, attempt)
    job = Job(
        run_date=layout.run_date,
        cohort=cohort,
        spec=spec,
        attempt=attempt,
        job_uri=layout.attempt_job(cohort, spec.slug, attempt),
        output_uri=layout.attempt_output(cohort, spec.slug, attempt),
        log_path=spool_path(log_uri),
    )
    return job, log_uri


def prepare(layout: Layout, cohort: str, spec: ProgramSpec) -> Prepared:
    """Write the attempt's job document (and CSV input if the spec wants one)."""
    input_uri = layout.cohort_input(cohort)
    try:
        data = storage.read_bytes(input_uri)
    except FileNotFoundError:
        raise InputError(
            f"cohort {cohort!r} is not in this run date's cohorts.csv", file=input_uri
        ) from None
    if spec.input_format == "csv":
        cleansed = pq.read_table(io.BytesIO(data))
        rows = cleansed.num_rows
    else:
        rows = pq.read_metadata(io.BytesIO(data)).num_rows
    if rows == 0:
        raise InputError(
            f"no cleansed responses for cohort {cohort!r}: every row was rejected or none "
            f"was delivered (see {layout.rejections()})",
            file=input_uri,
        )
    attempt = new_attempt_id()
    program_input = input_uri
    if spec.input_format == "csv":
        program_input = layout.attempt_csv_input(cohort, spec.slug, attempt)
        storage.write_bytes(program_input, cleansed.to_pandas().to_csv(index=False).encode())
    document = JobDocument(
        spec=spec,
        run_date=layout.run_date,
        cohort=cohort,
        attempt=attempt,
        input=program_input,
        frame=layout.frame(),
        output=layout.attempt_output(cohort, spec.slug, attempt),
        checkpoint=layout.checkpoints(cohort, spec.slug) if spec.checkpoint_dir else "",
    )
    job, log_uri = _job(layout, cohort, spec, attempt)
    storage.write_json(job.job_uri, document.to_dict())
    return Prepared(job=job, rows=rows, log_uri=log_uri)


def resume(layout: Layout, cohort: str, spec: ProgramSpec, attempt: str) -> Prepared | None:
    """The ``Prepared`` of an earlier attempt (its job document must exist), to re-attach
    to its running cloud task; None when the attempt has no job document."""
    job, log_uri = _job(layout, cohort, spec, attempt)
    if not storage.exists(job.job_uri):
        return None
    if storage.is_s3(log_uri) and not job.log_path.exists() and storage.exists(log_uri):
        # Continue the log the killed orchestrator published, not a fresh one.
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.log_path.write_bytes(storage.read_bytes(log_uri))
    return Prepared(job=job, rows=_cohort_rows(layout, cohort), log_uri=log_uri)


# -- restarts: adopt what finished, record what was abandoned ----------------------------
@dataclass(frozen=True)
class Finished:
    """An earlier attempt whose program finished with complete, checksummed results."""

    prepared: Prepared
    record: RunRecord
    manifest: dict[str, Any]
    recorded: bool  # its run.json was written (metrics were sent) before the kill


def attempt_files(layout: Layout, cohort: str, spec: ProgramSpec) -> dict[str, set[str]]:
    """Attempt id → the URIs of the files it holds (compare them with the ``Layout``'s
    ``attempt_*`` paths), oldest attempt first."""
    where = layout.attempts(cohort, spec.slug)
    prefix = where.rstrip("/") + "/"
    found: dict[str, set[str]] = {}
    # (on S3 one LIST call: every RunModel of a delivery asks this at its start)
    for uri in storage.listdir(where):
        attempt, _, rest = uri.removeprefix(prefix).partition("/")
        if attempt and rest:
            found.setdefault(attempt, set()).add(prefix + attempt + "/" + rest)
    return dict(sorted(found.items()))


def has_attempts(layout: Layout, cohort: str, spec: ProgramSpec) -> bool:
    """Whether any attempt of this cohort and spec was ever prepared."""
    return bool(attempt_files(layout, cohort, spec))


def run_records(
    layout: Layout, cohort: str, spec: ProgramSpec, *, interrupted: bool = True
) -> list[str]:
    """The URIs of every attempt's ``pipeline_runs`` rows, oldest attempt first: the cloud
    tasks the service ended under it (``interrupted``), then its ``run.json`` if any."""
    slug, records = spec.slug, []
    for attempt, files in attempt_files(layout, cohort, spec).items():
        if interrupted:
            ended = layout.attempt_interruptions(cohort, slug, attempt) + "/"
            records += sorted(uri for uri in files if uri.startswith(ended))
        if layout.attempt_run(cohort, slug, attempt) in files:
            records.append(layout.attempt_run(cohort, slug, attempt))
    return records


def _read_json(uri: str) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or not a whole JSON object."""
    try:
        value = json.loads(storage.read_bytes(uri))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _attempt_manifest(
    layout: Layout, cohort: str, spec: ProgramSpec, attempt: str
) -> dict[str, Any] | None:
    """The attempt's ``manifest.json`` (None: missing, unreadable or another attempt's)."""
    manifest = _read_json(layout.attempt_manifest(cohort, spec.slug, attempt))
    return manifest if manifest and manifest.get("attempt") == attempt else None


def complete_manifest(
    layout: Layout, cohort: str, spec: ProgramSpec, attempt: str
) -> dict[str, Any] | None:
    """The attempt's manifest when it says the program exited 0 for this attempt and the
    results file's sha256 matches the one the manifest recorded; else None."""
    manifest = _attempt_manifest(layout, cohort, spec, attempt)
    if not manifest or manifest.get("exit_code") != 0:
        return None
    expected = (manifest.get("outputs") or {}).get(spec.results)
    results_uri = layout.attempt_results(cohort, spec.slug, attempt, spec.results)
    if not expected or not storage.exists(results_uri):
        return None
    if hashlib.sha256(storage.read_bytes(results_uri)).hexdigest() != expected:
        return None
    return manifest


def _manifest_record(job: Job, manifest: dict[str, Any], executor: str, log_uri: str) -> RunRecord:
    """The run record of an attempt whose orchestrator died before it wrote one: what
    the wrapper's manifest says (its program time stands in for what was billed)."""
    seconds = float(manifest.get("program_seconds") or 0.0)
    vcpu_seconds = job.spec.cpu / 1024 * seconds
    memory_gib_seconds = job.spec.memory / 1024 * seconds
    return RunRecord(
        executor=executor,
        job_id="",
        attempt=job.attempt,
        started_at=str(manifest.get("started_at", "")),
        finished_at=str(manifest.get("finished_at", "")),
        exit_code=0,
        vcpu_seconds=round(vcpu_seconds, 3),
        memory_gib_seconds=round(memory_gib_seconds, 3),
        cost_usd=estimate_cost(executor, vcpu_seconds, memory_gib_seconds),
        log_uri=log_uri,
        host=str(manifest.get("host", "")),
    )


def find_finished(layout: Layout, cohort: str, spec: ProgramSpec, executor: str) -> Finished | None:
    """The newest attempt that finished successfully and was not recorded as failed or
    abandoned, with complete, checksummed results; None when there is none."""
    for attempt, files in reversed(attempt_files(layout, cohort, spec).items()):
        needed = (layout.attempt_manifest, layout.attempt_job)
        if any(path(cohort, spec.slug, attempt) not in files for path in needed):
            continue
        row = _read_json(layout.attempt_run(cohort, spec.slug, attempt)) or {}
        if row.get("status") in (FAILED, ABANDONED):
            continue
        manifest = complete_manifest(layout, cohort, spec, attempt)
        if manifest is None:
            continue
        job, log_uri = _job(layout, cohort, spec, attempt)
        if row.get("status") == SUCCEEDED:
            fields = RunRecord.__dataclass_fields__
            record = RunRecord(**{k: v for k, v in row.items() if k in fields})
        else:
            record = _manifest_record(job, manifest, executor, log_uri)
        prepared = Prepared(job=job, rows=_cohort_rows(layout, cohort), log_uri=log_uri)
        return Finished(prepared, record, manifest, recorded=row.get("status") == SUCCEEDED)
    return None


def _attempt_time(attempt: str) -> str:
    try:
        return datetime.strptime(attempt[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return datetime.now(UTC).isoformat()


def _abandoned_row(layout: Layout, cohort: str, spec: ProgramSpec, attempt: str, why: str,
                   previous: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    if previous:  # a success another attempt superseded: keep what it recorded
        return {**previous, "status": ABANDONED, "error": why}
    job, log_uri = _job(layout, cohort, spec, attempt)
    record = RunRecord(
        executor="",
        job_id="",
        attempt=attempt,
        started_at=_attempt_time(attempt),
        finished_at=datetime.now(UTC).isoformat(),
        exit_code=None,
        log_uri=log_uri,
        error=why,
    )
    return run_row(job, record, ABANDONED)


def abandon(
    layout: Layout,
    cohort: str,
    spec: ProgramSpec,
    *,
    keep: str = "",
    superseded: bool = False,
    why: str = "",
) -> list[str]:
    """Record every attempt but ``keep`` that has no ``run.json`` (it never finished, or
    its orchestrator died) as abandoned; with ``superseded``, successful ones too. Returns
    the attempt ids recorded."""
    recorded = []
    for attempt, files in attempt_files(layout, cohort, spec).items():
        if attempt == keep:
            continue
        uri = layout.attempt_run(cohort, spec.slug, attempt)
        previous = _read_json(uri) if uri in files else None
        if previous is None:
            reason = why or "abandoned: the run that started it stopped before it finished"
        elif superseded and previous.get("status") == SUCCEEDED:
            reason = why or f"superseded by attempt {keep}"
        else:
            continue
        storage.write_json(uri, _abandoned_row(layout, cohort, spec, attempt, reason, previous))
        recorded.append(attempt)
    return recorded


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


def compute_record(
    job: Job, record: RunRecord, status: str, manifest: dict[str, Any] | None
) -> dict[str, Any]:
    """``attempts/<id>/compute.json``: every submission of the attempt (the abandoned
    ones, then the deciding one) with its capacity, compute, cost at its capacity's price
    and at the on-demand price, and interruption; ``resumed`` says the deciding one
    restored a checkpoint (so the abandoned submissions' work was kept, not redone).
    docs/executors.md, "Records of every submission"."""
    submissions = []
    for one in [*record.interrupted, record]:
        submissions.append(
            {
                "job_id": one.job_id,
                "executor": one.executor,
                "capacity": one.capacity or ON_DEMAND,
                "started_at": one.started_at,
                "finished_at": one.finished_at,
                "exit_code": one.exit_code,
                "status": status if one is record else ABANDONED,
                "interruption": one.interruption,
                "vcpu_seconds": one.vcpu_seconds,
                "memory_gib_seconds": one.memory_gib_seconds,
                "cost_usd": one.cost_usd,
                "on_demand_cost_usd": estimate_cost(
                    one.executor, one.vcpu_seconds, one.memory_gib_seconds, ON_DEMAND
                ),
            }
        )
    checkpoint = (manifest or {}).get("checkpoint") or {}
    return {
        "attempt": job.attempt,
        "run_date": job.run_date,
        "cohort": job.cohort,
        "program_name": job.spec.name,
        "program_version": job.spec.version,
        "program_fingerprint": job.spec.fingerprint,
        "checkpoints": bool(job.spec.checkpoint_dir),
        "resumed": bool(checkpoint.get("restored")),
        "submissions": submissions,
    }


def _record_compute(
    layout: Layout,
    job: Job,
    record: RunRecord,
    status: str,
    manifest: Callable[[], dict[str, Any] | None],
) -> None:
    uri = layout.attempt_compute(job.cohort, job.spec.slug, job.attempt)
    existing = _read_json(uri) if not record.interrupted else None
    if existing and record.job_id in {s.get("job_id") for s in existing.get("submissions", [])}:
        # An adopted attempt (its record rebuilt from run.json, without the abandoned
        # submissions): what the run that watched it wrote says more.
        existing["submissions"][-1]["status"] = status
        storage.write_json(uri, existing)
        return
    storage.write_json(uri, compute_record(job, record, status, manifest()))


def _exit_code(manifest: dict[str, Any] | None) -> int:
    """The program's exit code in a manifest (0 if none): what the wrapper saw. A service
    may report a stopped container's exit code as 0 when it never learnt one (moto does
    for every ECS task), which would make a failed program read as one that exited 0
    without results."""
    code = (manifest or {}).get("exit_code")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def collect(layout: Layout, prepared: Prepared, record: RunRecord) -> pd.DataFrame:
    """Record the attempt and, when it succeeded, write the cohort's results and run
    record; raises ``ProgramFailed`` with the log tail when it did not."""
    job = prepared.job
    spec, cohort = job.spec, job.cohort
    attempt_run = layout.attempt_run(cohort, spec.slug, job.attempt)
    for n, interrupted in enumerate(record.interrupted, start=1):
        storage.write_json(
            layout.attempt_interrupted(cohort, spec.slug, job.attempt, n),
            run_row(job, interrupted, ABANDONED),
        )
    problem = ""
    results = pd.DataFrame()
    # One GET at most, shared by the exit code of a run without results and its record.
    manifest = functools.cache(lambda: _attempt_manifest(layout, cohort, spec, job.attempt))
    if record.exit_code == 0:
        results_uri = layout.attempt_results(cohort, spec.slug, job.attempt, spec.results)
        try:
            results = storage.read_table(results_uri)  # one GET: missing is the exception
        except FileNotFoundError:
            said = _exit_code(manifest())
            if said:  # the service said 0 for the container; its wrapper said otherwise
                tail = record.error or "\n".join(tail_lines(job.log_path, 20))
                record = replace(record, exit_code=said, error=tail)
            else:
                problem = (
                    f"exited 0 but wrote no {spec.results} (outputs.results) under {job.output_uri}"
                )
        except ValueError as exc:
            problem = f"wrote unreadable results {results_uri}: {exc}"
    # The attempt's compute record, once, with its outcome known.
    succeeded = record.exit_code == 0 and not problem
    _record_compute(layout, job, record, SUCCEEDED if succeeded else FAILED, manifest)
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
    if problem:
        storage.write_json(attempt_run, run_row(job, record, FAILED))
        tail = "\n".join(f"    {line}" for line in tail_lines(job.log_path, 20))
        raise ProgramFailed(
            f"{spec.name} {spec.version} for cohort {cohort} {problem}; log: {prepared.log_uri}"
            + (f"\n  last lines:\n{tail}" if tail else "")
        )
    row = run_row(job, record, SUCCEEDED)
    storage.write_json(attempt_run, row)
    faults.point("collect.attempt-run")
    # This attempt's results are the delivery's: any other attempt is history.
    abandon(layout, cohort, spec, keep=job.attempt, superseded=True)
    storage.write_parquet(layout.model_results(cohort, spec.slug), results)
    faults.point("collect.results")
    storage.write_json(layout.model_run(cohort, spec.slug), row)
    faults.point("collect.done")
    return results


def supersede(layout: Layout, cohorts: list[str] | None, why: str) -> int:
    """Record every finished or unfinished attempt of ``cohorts`` (None: every cohort)
    as abandoned, so that the next run runs the program again instead of adopting one
    (``pipeline rerun --from model|cleanse``). Returns how many were recorded."""
    models = layout.models()
    specs: dict[tuple[str, str], ProgramSpec] = {}
    for uri in storage.listdir(models):
        parts = uri.removeprefix(models.rstrip("/") + "/").split("/")
        if len(parts) != 5 or uri != layout.attempt_job(parts[0], parts[1], parts[3]):
            continue
        cohort, slug = parts[0], parts[1]
        if (cohorts is not None and cohort not in cohorts) or (cohort, slug) in specs:
            continue
        try:
            specs[(cohort, slug)] = JobDocument.from_dict(storage.read_json(uri), source=uri).spec
        except (PipelineError, ValueError, KeyError):
            continue  # an unreadable job document: nothing would adopt that attempt anyway
    return sum(
        len(abandon(layout, cohort, spec, superseded=True, why=why))
        for (cohort, _slug), spec in specs.items()
    )
