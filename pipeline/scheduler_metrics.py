"""luigid's scheduler metrics with bounded, safe tags (luigi.cfg ``[scheduler]
metrics_collector = custom``, ``metrics_custom_import =
pipeline.scheduler_metrics.SchedulerMetricsCollector``).

Luigi's own datadog collector tags every task parameter: warehouse URIs, file paths and
anything else a task takes reach Datadog, and per-date/per-path tags explode the number
of series. This one sends the ``scheduler.*`` metrics of ``pipeline.metrics.METRICS``
tagged only with the task family, its step, and the ``cohort`` and ``executor``
parameters when they pass the allow-list. It never raises into the scheduler.
"""

from __future__ import annotations

import logging
from typing import Any

from luigi.metrics import MetricsCollector

from pipeline import metrics

logger = logging.getLogger("pipeline.scheduler_metrics")


class SchedulerMetricsCollector(MetricsCollector):
    """Counts started/done/failed/disabled tasks and their execution time in luigid."""

    def __init__(self) -> None:
        self._client: metrics.Metrics | None = None

    @property
    def client(self) -> metrics.Metrics:
        # Created on first use, in the luigid process, from its environment.
        if self._client is None:
            self._client = metrics.client()
        return self._client

    @staticmethod
    def tags(task: Any) -> dict[str, object]:
        family = str(getattr(task, "family", "") or "")
        params = getattr(task, "params", None) or {}
        return {
            "task_family": family,
            "step": metrics.step_tag(family),
            "cohort": params.get("cohort"),
            "executor": params.get("executor"),
        }

    def _count(self, name: str, task: Any) -> None:
        try:
            self.client.increment(name, 1, self.tags(task))
        except Exception as exc:  # never break the scheduler
            logger.debug("scheduler metric %s not sent: %s", name, exc)

    def handle_task_started(self, task: Any) -> None:
        self._count("scheduler.task.started", task)

    def handle_task_failed(self, task: Any) -> None:
        self._count("scheduler.task.failed", task)

    def handle_task_disabled(self, task: Any, config: Any) -> None:
        self._count("scheduler.task.disabled", task)

    def handle_task_done(self, task: Any) -> None:
        # A task found already complete was never running: no event, as in luigi's collector.
        if getattr(task, "time_running", None) is None:
            return
        self._count("scheduler.task.done", task)
        try:
            tags = self.tags(task)
            self.client.distribution(
                "scheduler.task.execution_time",
                float(task.updated - task.time_running),
                {"task_family": tags["task_family"], "step": tags["step"]},
            )
        except Exception as exc:
            logger.debug("scheduler execution time not sent: %s", exc)
