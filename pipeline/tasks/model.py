"""RunModel: one estimation program run for one cohort, on the configured executor."""

from __future__ import annotations

import luigi

from pipeline import metrics, storage
from pipeline.executors import Events, Executor, RunRecord, attempts, get_executor
from pipeline.tasks.base import CohortTask
from pipeline.tasks.quality import CheckData


class RunModel(CohortTask):
    """Runs the program spec's command for one cohort through the wrapper.

    Requires the cohort's data-quality gate (``CheckData``). Reads
    ``cleanse/cohorts/<cohort>.parquet`` and ``cleanse/frame.csv``; each attempt gets
    ``model/<cohort>/<slug>/attempts/<id>/`` (job.json, out/, manifest.json, run.json).
    On success writes ``model/<cohort>/<slug>/results.parquet`` and ``run.json``.
    """

    # Programs are the long, expensive part: the worker starts every cohort's run before
    # it validates or ingests a finished cohort.
    priority = 100
    # A run prepares its job, then waits for a program slot of its executor (local:
    # [resources] model_slots; ECS/Batch: max_running) and for the program: it takes no
    # --workers slot (pipeline.worker), so a freed program slot goes at once to a run
    # whose job is ready, and validation and ingest never wait behind programs.
    waits_in_thread = True

    def requires(self) -> CheckData:
        # The data-quality gate: a failed error check stops the cohort before its program.
        return CheckData(run_date=self.run_date, cohort=self.cohort, raw=self.raw)

    def output(self) -> dict[str, luigi.target.FileSystemTarget]:
        layout, cohort, slug = self.layout, self.cohort, self.spec.slug
        return {
            "results": self.target(layout.model_results(cohort, slug)),
            "run": self.target(layout.model_run(cohort, slug)),
        }

    def run(self) -> None:
        spec, layout, cohort = self.spec, self.layout, self.cohort
        # A restart first looks for compute an earlier, killed run already paid for (a
        # first run has no attempts: one LIST call, nothing else).
        earlier = attempts.has_attempts(layout, cohort, spec)
        finished = earlier and attempts.find_finished(layout, cohort, spec, self.executor)
        if finished:
            self.report(
                f"{spec.name} {spec.version}: adopting finished attempt "
                f"{finished.prepared.job.attempt} (results match its manifest)",
                50,
            )
            self._collect(finished.prepared, finished.record, metered=finished.recorded)
            return
        executor = get_executor(self.executor)
        events = Events(status=self.report, tracking_url=self.link, progress=self.show_progress)
        prepared, task_id, tags = self._running_attempt(executor) if earlier else (None, "", {})
        if prepared is None:
            if earlier:
                attempts.abandon(layout, cohort, spec)  # what a killed run left unfinished
            prepared = attempts.prepare(layout, cohort, spec)
            self.report(f"{spec.name} {spec.version}: {prepared.rows:,} rows on {self.executor}", 5)
        else:
            attempts.abandon(layout, cohort, spec, keep=prepared.job.attempt)
            self.report(
                f"{spec.name} {spec.version}: re-attaching to {task_id} "
                f"(attempt {prepared.job.attempt}) on {self.executor}",
                5,
            )
        try:
            if task_id:
                record = executor.reattach(prepared.job, task_id, tags, events)
            else:
                record = executor.run(prepared.job, events)
        finally:
            attempts.publish_log(prepared)
        self._collect(prepared, record)

    def _running_attempt(
        self, executor: Executor
    ) -> tuple[attempts.Prepared | None, str, dict[str, str]]:
        """The attempt whose task a killed run left running, to re-attach to (none locally:
        ``LocalExecutor.find_running``)."""
        task_id, tags = executor.find_running(self.run_date.isoformat(), self.cohort, self.spec)
        if not task_id:
            return None, "", {}
        attempt = tags["attempt"]
        if storage.exists(self.layout.attempt_run(self.cohort, self.spec.slug, attempt)):
            return None, "", {}  # already recorded: not one to take over
        prepared = attempts.resume(self.layout, self.cohort, self.spec, attempt)
        return (prepared, task_id, tags) if prepared is not None else (None, "", {})

    def _collect(
        self, prepared: attempts.Prepared, record: RunRecord, *, metered: bool = False
    ) -> None:
        spec = self.spec
        if not metered:
            metrics.record_model_run(self.cohort, record)
        results = attempts.collect(self.layout, prepared, record)
        self.report(
            f"{spec.name} {spec.version}: {len(results)} result rows in "
            f"{record.vcpu_seconds:.0f} vCPU·s on {record.executor}",
            progress=100,
        )
