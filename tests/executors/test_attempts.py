"""attempts.collect records every cloud task an attempt used: the one that produced the
results, and the ones the service interrupted and the executor resubmitted."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import storage
from pipeline.core.spec import ProgramSpec, spec_from_dict
from pipeline.errors import ProgramFailed
from pipeline.executors import attempts
from pipeline.executors.base import Job, RunRecord
from pipeline.layout import Layout
from pipeline.manifest import run_rows


def _toy_attempt(tmp_path: Path) -> tuple[ProgramSpec, Layout, Path, Job]:
    """Attempt a1 of a toy program for asthma: its spec, layout, output dir (made, empty)
    and job."""
    spec = spec_from_dict(
        {"name": "toy", "version": "1", "command": ["toy", "{output_dir}"],
         "outputs": {"results": "estimates.csv"}}
    )  # fmt: skip
    layout = Layout(str(tmp_path / "work"), "2026-11-22")
    out = Path(layout.attempt("asthma", spec.slug, "a1", "out"))
    out.mkdir(parents=True)
    job = Job(run_date="2026-11-22", cohort="asthma", spec=spec, attempt="a1",
              job_uri=layout.attempt("asthma", spec.slug, "a1", "job.json"),
              output_uri=str(out), log_path=tmp_path / "a1.log")  # fmt: skip
    return spec, layout, out, job


def test_interrupted_tasks_are_abandoned_rows_next_to_the_succeeded_one(tmp_path: Path) -> None:
    spec, layout, out, job = _toy_attempt(tmp_path)
    pd.DataFrame({"treatment": ["t"], "estimate": [1.0], "ci_low": [0.5], "ci_high": [1.5]}
                 ).to_csv(out / "estimates.csv", index=False)  # fmt: skip
    common = {"executor": "ecs", "attempt": "a1", "started_at": "2026-11-22T00:00:00+00:00",
              "finished_at": "2026-11-22T01:00:00+00:00"}  # fmt: skip
    spot = RunRecord(job_id="arn:task/1", exit_code=143,
                     interruption="SpotInterruption: interrupted", **common)  # fmt: skip
    record = RunRecord(job_id="arn:task/2", exit_code=0, interrupted=[spot], **common)
    prepared = attempts.Prepared(job=job, rows=1, log_uri=str(job.log_path))

    results = attempts.collect(layout, prepared, record)

    assert list(results["treatment"]) == ["t"]
    rows = sorted(run_rows(layout, "asthma", spec), key=lambda r: r["job_id"])
    assert [(r["job_id"], r["status"]) for r in rows] == [
        ("arn:task/1", "abandoned"),
        ("arn:task/2", "succeeded"),
    ]
    assert all(r["program_fingerprint"] == spec.fingerprint for r in rows)


def _reported_exit_0(job: Job) -> tuple[RunRecord, attempts.Prepared]:
    """Attempt a1 as ECS reports it: its container exited 0."""
    record = RunRecord(job_id="arn:task/1", exit_code=0, executor="ecs", attempt="a1",
                       started_at="2026-11-22T00:00:00+00:00",
                       finished_at="2026-11-22T01:00:00+00:00")  # fmt: skip
    return record, attempts.Prepared(job=job, rows=1, log_uri=str(job.log_path))


def _recorded(monkeypatch, name: str) -> list[str]:
    """The URIs ``storage.<name>`` is called with from now on (it still does its work)."""
    calls: list[str] = []
    real = getattr(storage, name)

    def recording(uri: str, *args: object) -> object:
        calls.append(uri)
        return real(uri, *args)

    monkeypatch.setattr(storage, name, recording)
    return calls


def test_a_program_that_exits_0_without_results_is_recorded_failed_once(
    tmp_path: Path, monkeypatch
) -> None:
    spec, layout, _out, job = _toy_attempt(tmp_path)  # the program wrote nothing
    record, prepared = _reported_exit_0(job)
    written = _recorded(monkeypatch, "write_bytes")

    with pytest.raises(ProgramFailed, match=r"exited 0 but wrote no estimates\.csv"):
        attempts.collect(layout, prepared, record)

    compute = layout.attempt_compute("asthma", spec.slug, "a1")
    assert written.count(compute) == 1  # its outcome known before it is written
    (submission,) = json.loads(Path(compute).read_text())["submissions"]
    assert submission["status"] == "failed"
    (row,) = run_rows(layout, "asthma", spec)
    assert row["status"] == "failed"


def test_a_failed_program_reads_as_failed_when_the_service_reports_its_container_exit_0(
    tmp_path: Path, monkeypatch
) -> None:
    """ECS may report 0 for a stopped container it learnt no exit code of (moto always
    does): the wrapper's manifest says what the program did, and the error says that."""
    spec, layout, _out, job = _toy_attempt(tmp_path)
    storage.write_json(layout.attempt_manifest("asthma", spec.slug, "a1"),
                       {"attempt": "a1", "exit_code": 3, "outputs": {}})  # fmt: skip
    job.log_path.write_text("toy: reference table is corrupt\n")
    record, prepared = _reported_exit_0(job)
    read = _recorded(monkeypatch, "read_bytes")

    with pytest.raises(ProgramFailed, match=r"exited with 3 on ecs") as failed:
        attempts.collect(layout, prepared, record)

    # The manifest is read once (for the exit code and the compute record).
    assert read.count(layout.attempt_manifest("asthma", spec.slug, "a1")) == 1, read

    assert "reference table is corrupt" in str(failed.value)  # the program's last lines
    (row,) = run_rows(layout, "asthma", spec)
    assert (row["status"], row["exit_code"]) == ("failed", 3)
    # A manifest of another attempt (a stale one) says nothing about this one.
    storage.write_json(layout.attempt_manifest("asthma", spec.slug, "a1"),
                       {"attempt": "a0", "exit_code": 3, "outputs": {}})  # fmt: skip
    with pytest.raises(ProgramFailed, match=r"exited 0 but wrote no estimates\.csv"):
        attempts.collect(layout, prepared, record)
