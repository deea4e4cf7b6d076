"""RunModel: one estimation program run for one cohort, on the configured executor."""

from __future__ import annotations

import luigi

from pipeline import metrics
from pipeline.executors import Events, attempts, get_executor
from pipeline.tasks.base import CohortTask
from pipeline.tasks.quality import CheckData


class RunModel(CohortTask):
    """Runs the program spec's command for one cohort through the wrapper.

    Requires the cohort's data-quality gate (``CheckData``). Reads
    ``cleanse/cohorts/<cohort>.parquet`` and ``cleanse/frame.csv``; each attempt gets
    ``model/<cohort>/<slug>/attempts/<id>/`` (job.json, out/, manifest.json, run.json).
    On success writes ``model/<cohort>/<slug>/results.parquet`` and ``run.json``.
    """

    # Programs are the long, expensive part: a free worker starts the next one before it
    # validates or ingests a finished cohort, so N cohorts take ceil(N / slots) waves.
    priority = 100

    @property
    def waits_in_thread(self) -> bool:
        """A cloud run only submits and waits: it runs in a thread of the worker
        (``pipeline.worker``), so every cohort's task runs at once without a process each."""
        return self.executor != "local"

    @property
    def resources(self) -> dict[str, int]:
        # Local runs share this machine's cores; cloud runs only cost a poller here.
        return {"model_slots": 1} if self.executor == "local" else {}

    def requires(self) -> CheckData:
        # The data-quality gate: a failed error check stops the cohort before its program.
        return CheckData(run_date=self.run_date, cohort=self.cohort, raw=self.raw)

    def output(self) -> dict[str, luigi.target.FileSystemTarget]:
        model = self.layout.model(self.cohort, self.spec.slug)
        return {
            "results": self.target(f"{model}/results.parquet"),
            "run": self.target(f"{model}/run.json"),
        }

    def run(self) -> None:
        spec, layout = self.spec, self.layout
        prepared = attempts.prepare(layout, self.cohort, spec)
        self.report(f"{spec.name} {spec.version}: {prepared.rows:,} rows on {self.executor}", 5)
        events = Events(status=self.report, tracking_url=self.link, progress=self.show_progress)
        try:
            record = get_executor(self.executor).run(prepared.job, events)
        finally:
            attempts.publish_log(prepared)
        metrics.record_model_run(self.cohort, record)
        results = attempts.collect(layout, prepared, record)
        self.report(
            f"{spec.name} {spec.version}: {len(results)} result rows in "
            f"{record.vcpu_seconds:.0f} vCPU·s on {record.executor}",
            progress=100,
        )
