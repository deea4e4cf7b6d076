"""RunModel: one estimation program run for one cohort, on the configured executor."""

from __future__ import annotations

import functools
import io
import secrets
from datetime import UTC, datetime

import luigi
import pyarrow.parquet as pq

from pipeline import config, metrics, storage
from pipeline.core.spec import ProgramSpec, load_spec
from pipeline.errors import InputError, ProgramFailed
from pipeline.executors import Events, Job, get_executor
from pipeline.tasks.base import CohortTask, executor_name, program_path
from pipeline.tasks.cleanse import CleanseSurvey, cohort_input_uri


class RunModel(CohortTask):
    """Runs the program spec's command for one cohort through the wrapper.

    Reads ``cleanse/cohorts/<cohort>.parquet`` and ``cleanse/frame.csv``; each attempt gets
    ``model/<cohort>/<slug>/attempts/<id>/`` (job.json, out/, manifest.json, run.json).
    On success writes ``model/<cohort>/<slug>/results.parquet`` and ``run.json``.
    """

    # Programs are the long, expensive part: a free worker starts the next one before it
    # validates or ingests a finished cohort, so N cohorts take ceil(N / slots) waves.
    priority = 100

    @property
    def resources(self) -> dict[str, int]:
        # Local runs share this machine's cores; cloud runs only cost a poller here.
        return {"model_slots": 1} if executor_name(self.executor) == "local" else {}

    @functools.cached_property
    def spec(self) -> ProgramSpec:
        return load_spec(program_path(self.program))

    def requires(self) -> CleanseSurvey:
        return CleanseSurvey(run_date=self.run_date)

    def model_dir(self) -> list[str]:
        return ["model", self.cohort, self.spec.slug]

    def output(self) -> dict[str, luigi.target.FileSystemTarget]:
        return {
            "results": self.target(*self.model_dir(), "results.parquet"),
            "run": self.target(*self.model_dir(), "run.json"),
        }

    def run(self) -> None:
        spec = self.spec
        run_date = self.run_date.isoformat()
        input_uri = cohort_input_uri(run_date, self.cohort)
        if not storage.exists(input_uri):
            raise InputError(
                f"cohort {self.cohort!r} is not in this run date's cohorts.csv", file=input_uri
            )
        cleansed = pq.read_table(io.BytesIO(storage.read_bytes(input_uri)))
        if cleansed.num_rows == 0:
            raise InputError(
                f"no cleansed responses for cohort {self.cohort!r}: every row was rejected "
                "or none was delivered (see rejections.parquet)",
                file=input_uri,
            )
        executor = executor_name(self.executor)
        self.report(
            f"preparing {spec.name} {spec.version} for {cleansed.num_rows:,} rows on {executor}",
            progress=5,
        )
        attempt = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        attempt_uri = self.path(*self.model_dir(), "attempts", attempt)
        if spec.input_format == "csv":
            program_input = storage.join(attempt_uri, "input.csv")
            storage.write_bytes(program_input, cleansed.to_pandas().to_csv(index=False).encode())
        else:
            program_input = input_uri
        job_uri = storage.join(attempt_uri, "job.json")
        output_uri = storage.join(attempt_uri, "out")
        storage.write_json(
            job_uri,
            {
                "spec": spec.to_dict(),
                "run_date": run_date,
                "cohort": self.cohort,
                "input": program_input,
                "frame": self.path("cleanse", "frame.csv"),
                "output": output_uri,
            },
        )
        job = Job(
            run_date=run_date,
            cohort=self.cohort,
            spec=spec,
            attempt=attempt,
            job_uri=job_uri,
            output_uri=output_uri,
            log_path=config.logs_dir() / run_date / self.cohort / f"{spec.slug}-{attempt}.log",
        )
        events = Events(
            status=self.report,
            tracking_url=self.link,
            progress=self.show_progress,
        )
        record = get_executor(executor).run(job, events)
        row = {**record.to_dict(), "program_name": spec.name, "program_version": spec.version}
        storage.write_json(storage.join(attempt_uri, "run.json"), row)
        metrics.record_model_run(self.cohort, record)
        if record.exit_code != 0:
            tail = "\n".join(f"    {line}" for line in record.error.splitlines()[-20:])
            # A cloud task that never ran its container (e.g. the image could not be
            # pulled) has no exit code; the error's last line says why.
            ended = (
                f"exited with {record.exit_code}"
                if record.exit_code is not None
                else "ended without an exit code"
            )
            raise ProgramFailed(
                f"{spec.name} {spec.version} for cohort {self.cohort} {ended}"
                f" on {record.executor} ({record.job_id}); "
                f"log: {record.log_uri}" + (f"\n  last lines:\n{tail}" if tail else "")
            )
        results_uri = storage.join(output_uri, spec.results)
        if not storage.exists(results_uri):
            raise ProgramFailed(
                f"{spec.name} {spec.version} for cohort {self.cohort} exited 0 but wrote no "
                f"{spec.results} (outputs.results) under {output_uri}; log: {record.log_uri}"
            )
        try:
            results = storage.read_table(results_uri)
        except ValueError as exc:
            raise ProgramFailed(f"{results_uri}: unreadable results: {exc}") from None
        storage.write_parquet(self.path(*self.model_dir(), "results.parquet"), results)
        storage.write_json(self.path(*self.model_dir(), "run.json"), row)
        self.report(
            f"{spec.name} {spec.version}: {len(results)} result rows in "
            f"{record.vcpu_seconds:.0f} vCPU·s on {record.executor}",
            progress=100,
        )
