"""ValidateResults: plausibility checks of one cohort's results, written as data."""

from __future__ import annotations

import io

import luigi
import pyarrow.parquet as pq

from pipeline import metrics, storage
from pipeline.core.validate import blocking_failures, validate_results
from pipeline.tasks.base import CohortTask
from pipeline.tasks.model import RunModel


class ValidateResults(CohortTask):
    """Reads ``model/<cohort>/<slug>/results.parquet`` and the cohort's treatments (its
    cleansed share columns); writes ``validate/<cohort>/<slug>/checks.parquet``. Failed
    checks do not fail this task: ``IngestResults`` records them and blocks on errors."""

    def requires(self) -> RunModel:
        return RunModel(**self.cohort_params())

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target(self.layout.checks(self.cohort, self.spec.slug))

    def run(self) -> None:
        self.report("checking results", progress=0)
        results = storage.read_parquet(self.input()["results"].path)
        schema = pq.read_schema(
            io.BytesIO(storage.read_bytes(self.layout.cohort_input(self.cohort)))
        )
        treatments = [n.removeprefix("share_") for n in schema.names if n.startswith("share_")]
        checks = validate_results(results, treatments)
        storage.write_parquet(self.output().path, checks)
        metrics.record_validation(self.cohort, checks.to_dict("records"))
        failed = checks[~checks["passed"]]
        errors = len(blocking_failures(checks))
        self.report(
            f"{len(checks) - len(failed)}/{len(checks)} checks passed"
            + (f"; {errors} error(s): {', '.join(failed['check'])}" if len(failed) else ""),
            progress=100,
        )
