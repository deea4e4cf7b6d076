"""RunModel: one estimation program run for one cohort, on the configured executor."""

from __future__ import annotations

import threading
import time
from typing import Any

import luigi

from pipeline import metrics, storage
from pipeline.executors import Events, Executor, RunRecord, attempts, get_executor
from pipeline.executors.base import estimate_cost
from pipeline.tasks.base import CohortTask, compute_of
from pipeline.tasks.quality import CheckData

TICK_SECONDS = 60.0  # how often a running program's line in luigid is brought up to date


def clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Heartbeat:
    """A program run's status line in luigid, kept current while it runs: the executor's
    last word (where it runs: local pid, ECS task, Batch job), for how long the run has
    been going, and what the cohort has cost so far: its earlier attempts' records plus
    this run's reservation (the spec's cpu and memory × wall time at [cost] prices)."""

    def __init__(self, task: RunModel, *, earlier: bool, interval: float = TICK_SECONDS) -> None:
        self.task, self.interval = task, interval
        spec = task.spec
        # (a first run has no earlier attempts: no listing)
        self.earlier = compute_of(task.layout, task.cohort, spec).cost_usd if earlier else 0.0
        self.vcpus, self.gib = spec.cpu / 1024, spec.memory / 1024
        self.started = time.monotonic()
        self.last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="heartbeat")

    def line(self) -> str:
        seconds = time.monotonic() - self.started
        cost = self.earlier + estimate_cost(
            self.task.executor, self.vcpus * seconds, self.gib * seconds
        )
        return f"{self.last} · for {clock(seconds)} · ~${cost:,.2f} so far"

    def status(self, message: str) -> None:
        self.last = message
        self.task.report(self.line())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.last:
                self.task.show(self.line())

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()


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
        heartbeat = Heartbeat(self, earlier=earlier)
        events = Events(
            status=heartbeat.status, tracking_url=self.link, progress=self.show_progress
        )
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
            with heartbeat:
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
        total = compute_of(self.layout, self.cohort, spec)
        self.report(
            f"{spec.name} {spec.version}: {len(results)} result rows in "
            f"{record.vcpu_seconds:.0f} vCPU·s on {record.executor} ({record.job_id}); "
            f"the cohort's program runs: {total.text()}",
            progress=100,
        )
