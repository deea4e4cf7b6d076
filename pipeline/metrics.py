"""Pipeline metrics to Datadog through DogStatsD: one namespace, declared names, safe tags.

``client()`` returns a ``Metrics`` object built from the environment (``DD_AGENT_HOST``,
``DD_DOGSTATSD_PORT``) and the ``[datadog]`` section of luigi.cfg. Every metric is
declared in ``METRICS`` (name, type, allowed tags; docs/metrics.md lists the same), and
every tag is checked against ``TAGS``: a key that is not allow-listed, or a value outside
its vocabulary, is dropped with a warning, so no task parameter, respondent identifier,
URI or secret can reach Datadog and no tag can grow without bound. Sending is UDP and
fire-and-forget: no agent listening, a bad host or a bad value never raises.

The record_* functions turn one step's result into its metrics, so a task's ``run()``
needs one call.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import config
from pipeline.steps import STEPS, step_of

logger = logging.getLogger("pipeline.metrics")

DEFAULT_NAMESPACE = "survey_pipeline"
DEFAULT_PORT = 8125

COUNT, GAUGE, HISTOGRAM, DISTRIBUTION = "count", "gauge", "histogram", "distribution"

# Tag keys and the values each may take: a fixed vocabulary, or a pattern for vocabularies
# bounded by code (cleansing reasons, check names, table names, task classes) or by the
# cohorts.csv contract (cohort codes: one per disease). There is deliberately no run_date
# tag: it would add new series every day for ever, and the metric's timestamp already
# says when; per-date detail lives in `pipeline status` and the pipeline_runs table.
_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}")
TAGS: dict[str, frozenset[str] | re.Pattern[str]] = {
    "cohort": re.compile(r"[a-z0-9][a-z0-9_-]{0,63}"),
    "executor": frozenset({"local", "ecs", "batch"}),
    "step": frozenset({*(step.name for step in STEPS), "other"}),
    "status": frozenset({"succeeded", "failed", "deadline", "lost", "passed"}),
    "severity": frozenset({"error", "warning"}),
    "reason": _WORD,
    "check": _WORD,
    "table": _WORD,
    "warehouse": frozenset({"duckdb", "bigquery"}),
    "task_family": _WORD,
}


@dataclass(frozen=True)
class Metric:
    """One declared metric: its name under the namespace, type, unit and allowed tags."""

    name: str
    kind: str
    unit: str
    tags: tuple[str, ...]
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("cleanse.raw_rows", COUNT, "row", (), "Raw response rows read by CleanseSurvey."),
        Metric(
            "cleanse.cleansed_rows",
            COUNT,
            "row",
            ("cohort",),
            "Rows kept by cleansing, per cohort (the program's input size).",
        ),
        Metric(
            "cleanse.rejected_rows", COUNT, "row", (), "Rows rejected by cleansing (all reasons)."
        ),
        Metric(
            "cleanse.rejections",
            COUNT,
            "row",
            ("reason",),
            "Rejected rows per cleansing rule; a row with two reasons counts under both.",
        ),
        Metric(
            "quality.rejection_rate",
            GAUGE,
            "fraction",
            ("cohort",),
            "Share of a cohort's raw rows rejected by cleansing in its latest delivery "
            "(CheckData, before the program runs).",
        ),
        Metric(
            "quality.reason_rate",
            GAUGE,
            "fraction",
            ("cohort", "reason"),
            "Share of a cohort's raw rows rejected for one cleansing rule in its latest delivery.",
        ),
        Metric(
            "quality.failures",
            COUNT,
            "check",
            ("cohort", "check", "severity"),
            "Failed data-quality checks (0 or 1 per check and run); an error stops the cohort.",
        ),
        Metric(
            "model.runs",
            COUNT,
            "run",
            ("cohort", "executor", "status"),
            "Program runs by outcome: succeeded, failed (non-zero exit), deadline (the "
            "spec's timeout, exit 124) or lost (no exit code: the task or job vanished).",
        ),
        Metric(
            "model.duration",
            DISTRIBUTION,
            "second",
            ("cohort", "executor", "status"),
            "Wall time of one program run, from the executor's run record.",
        ),
        Metric(
            "model.exit_code",
            GAUGE,
            "code",
            ("cohort", "executor"),
            "Exit code of the cohort's last program run (-1 when there was none).",
        ),
        Metric(
            "model.vcpu_seconds",
            DISTRIBUTION,
            "second",
            ("cohort", "executor"),
            "vCPU seconds of one program run (CPU used locally; reserved × wall in the cloud).",
        ),
        Metric(
            "model.cost_usd",
            COUNT,
            "dollar",
            ("cohort", "executor"),
            "Estimated cost of program runs ([cost] prices in luigi.cfg); sum it over time.",
        ),
        Metric(
            "delivery.cost_usd",
            GAUGE,
            "dollar",
            ("cohort", "executor"),
            "A cohort's compute cost in its latest delivery: every program run of it, "
            "abandoned and interrupted attempts included ([cost] prices). Sent when its "
            "results are ingested (again after a re-run); sum over cohorts for a delivery.",
        ),
        Metric(
            "delivery.vcpu_seconds",
            GAUGE,
            "second",
            ("cohort", "executor"),
            "vCPU-seconds of a cohort's latest delivery, abandoned attempts included.",
        ),
        Metric(
            "delivery.memory_gib_seconds",
            GAUGE,
            "gibibyte_second",
            ("cohort", "executor"),
            "GiB-seconds of a cohort's latest delivery, abandoned attempts included.",
        ),
        Metric(
            "delivery.abandoned_cost_usd",
            GAUGE,
            "dollar",
            ("cohort", "executor"),
            "The part of delivery.cost_usd spent on attempts that did not produce the "
            "results (failed, interrupted, abandoned, superseded).",
        ),
        Metric(
            "validate.checks",
            COUNT,
            "check",
            ("cohort", "check", "severity", "status"),
            "Validation checks run, by outcome (status passed or failed).",
        ),
        Metric(
            "validate.failures",
            COUNT,
            "check",
            ("cohort", "check", "severity"),
            "Failed validation checks (0 or 1 per check and run, so every check has a series).",
        ),
        Metric(
            "validate.drift",
            GAUGE,
            "fraction",
            ("cohort",),
            "Largest relative change of a treatment's estimate vs the cohort's last published "
            "delivery of the same program (0 when there is none to compare with).",
        ),
        Metric(
            "ingest.rows",
            COUNT,
            "row",
            ("table", "warehouse", "cohort"),
            "Rows loaded into a warehouse table (survey tables carry no cohort tag).",
        ),
        Metric(
            "task.duration",
            DISTRIBUTION,
            "second",
            ("step", "cohort"),
            "Run time of a successful pipeline task (luigi's processing time).",
        ),
        Metric(
            "task.failures",
            COUNT,
            "task",
            ("step", "cohort"),
            "Failed pipeline tasks (the error line is in `pipeline status`).",
        ),
        Metric(
            "orphans.reaped",
            COUNT,
            "task",
            ("executor",),
            "Cloud tasks/jobs stopped by `pipeline reap` (lease expired or deadline passed).",
        ),
        Metric(
            "scheduler.task.started",
            COUNT,
            "task",
            ("task_family", "step", "cohort", "executor"),
            "luigid: a task was handed to a worker.",
        ),
        Metric(
            "scheduler.task.done",
            COUNT,
            "task",
            ("task_family", "step", "cohort", "executor"),
            "luigid: a task finished successfully.",
        ),
        Metric(
            "scheduler.task.failed",
            COUNT,
            "task",
            ("task_family", "step", "cohort", "executor"),
            "luigid: a task failed.",
        ),
        Metric(
            "scheduler.task.disabled",
            COUNT,
            "task",
            ("task_family", "step", "cohort", "executor"),
            "luigid: a task was disabled after too many failures ([scheduler] retry_count).",
        ),
        Metric(
            "scheduler.task.execution_time",
            DISTRIBUTION,
            "second",
            ("task_family", "step"),
            "luigid: time from a task's start to its completion.",
        ),
    )
}


def step_tag(family: str) -> str:
    """The ``step`` tag of a luigi task family (also used by luigid's metrics collector)."""
    step = step_of(family)
    return step.name if step else "other"


_SANITISE = re.compile(r"[^a-z0-9_.\-/]")


def tag_value(key: str, value: object) -> str | None:
    """The Datadog-safe form of a tag value, or None when ``key`` may not carry it."""
    allowed = TAGS.get(key)
    if allowed is None:
        return None
    text = _SANITISE.sub("_", str(value).strip().lower())
    if isinstance(allowed, frozenset):
        return text if text in allowed else None
    return text if allowed.fullmatch(text) else None


def safe_tags(metric: Metric, tags: Mapping[str, object] | None) -> list[str]:
    """``key:value`` strings for the tags ``metric`` declares; anything else is dropped."""
    result = []
    for key, value in (tags or {}).items():
        if value is None or value == "":
            continue
        safe = tag_value(key, value) if key in metric.tags else None
        if safe is None:
            _warn_once(f"metric {metric.name}: tag {key!r} dropped (not allow-listed or bad value)")
            continue
        result.append(f"{key}:{safe}")
    return result


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning(message)


class Metrics:
    """Sends declared metrics under one namespace; every method swallows every error.

    ``statsd`` is a ``datadog.dogstatsd.DogStatsd`` (or None: metrics disabled).
    """

    def __init__(self, statsd: Any | None, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.statsd = statsd
        self.namespace = namespace

    @property
    def enabled(self) -> bool:
        return self.statsd is not None

    def increment(
        self, name: str, value: float = 1, tags: Mapping[str, object] | None = None
    ) -> None:
        self._send(COUNT, name, value, tags)

    def gauge(self, name: str, value: float, tags: Mapping[str, object] | None = None) -> None:
        self._send(GAUGE, name, value, tags)

    def histogram(self, name: str, value: float, tags: Mapping[str, object] | None = None) -> None:
        self._send(HISTOGRAM, name, value, tags)

    def distribution(
        self, name: str, value: float, tags: Mapping[str, object] | None = None
    ) -> None:
        self._send(DISTRIBUTION, name, value, tags)

    def _send(self, kind: str, name: str, value: float, tags: Mapping[str, object] | None) -> None:
        if self.statsd is None:
            return
        try:
            metric = METRICS.get(name)
            if metric is None or metric.kind != kind:
                _warn_once(
                    f"metric {name!r} ({kind}) is not declared in pipeline.metrics.METRICS: dropped"
                )
                return
            send = {
                COUNT: self.statsd.increment,
                GAUGE: self.statsd.gauge,
                HISTOGRAM: self.statsd.histogram,
                DISTRIBUTION: self.statsd.distribution,
            }[kind]
            send(f"{self.namespace}.{name}", float(value), tags=safe_tags(metric, tags))
        except Exception as exc:  # metrics must never fail the pipeline
            logger.debug("metric %s not sent: %s", name, exc)


def client() -> Metrics:
    """The process's metrics client, from ``DD_AGENT_HOST`` / ``DD_DOGSTATSD_PORT`` (then
    ``[datadog] statsd_host`` / ``statsd_port``). Without a host, metrics are disabled: a
    laptop run sends nothing. ``DD_ENV``/``DD_SERVICE``/``DD_VERSION`` become the
    ``env``/``service``/``version`` tags (set by the operator, never by task data)."""
    host = os.environ.get("DD_AGENT_HOST") or config.get("datadog", "statsd_host")
    port = os.environ.get("DD_DOGSTATSD_PORT") or config.get(
        "datadog", "statsd_port", str(DEFAULT_PORT)
    )
    namespace = config.get("datadog", "metric_namespace", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE
    return _client(host, port, namespace)


@functools.lru_cache(maxsize=8)
def _client(host: str, port: str, namespace: str) -> Metrics:
    if not host:
        return Metrics(None, namespace)
    try:
        from datadog.dogstatsd import DogStatsd

        statsd = DogStatsd(
            host=host,
            port=int(port),
            disable_telemetry=True,  # no extra client-telemetry packets
        )
    except Exception as exc:
        logger.warning("DogStatsD at %s:%s unusable, metrics disabled: %s", host, port, exc)
        return Metrics(None, namespace)
    return Metrics(statsd, namespace)


# -- one call per step -------------------------------------------------------------------


def record_cleanse(summary: Mapping[str, Any], metrics: Metrics | None = None) -> None:
    """Rows read, kept per cohort, rejected, and rejections per reason."""
    m = metrics or client()
    m.increment("cleanse.raw_rows", summary.get("raw_rows", 0))
    m.increment("cleanse.rejected_rows", summary.get("rejected_rows", 0))
    for code, info in (summary.get("cohorts") or {}).items():
        m.increment("cleanse.cleansed_rows", info.get("cleansed", 0), {"cohort": code})
    for reason, count in (summary.get("rejections_by_reason") or {}).items():
        m.increment("cleanse.rejections", count, {"reason": reason})


def record_quality(
    cohort: str,
    figures: Mapping[str, Any],
    checks: Iterable[Mapping[str, Any]],
    metrics: Metrics | None = None,
) -> None:
    """A cohort's data-quality figures (rejection rates) and failed checks."""
    m = metrics or client()
    m.gauge("quality.rejection_rate", float(figures.get("rejection_rate", 0.0)), {"cohort": cohort})
    for reason, rate in (figures.get("reason_rates") or {}).items():
        m.gauge("quality.reason_rate", float(rate), {"cohort": cohort, "reason": reason})
    for row in checks:
        tags = {"cohort": cohort, "check": row["check"], "severity": row["severity"]}
        m.increment("quality.failures", 0 if row["passed"] else 1, tags)


def record_drift(cohort: str, largest_change: float, metrics: Metrics | None = None) -> None:
    """The largest relative change of the cohort's estimates vs its last published ones."""
    (metrics or client()).gauge("validate.drift", float(largest_change), {"cohort": cohort})


def run_status(exit_code: int | None) -> str:
    """The ``status`` tag of a program run from its exit code."""
    if exit_code is None:
        return "lost"
    if exit_code == 0:
        return "succeeded"
    return "deadline" if exit_code == 124 else "failed"


def record_model_run(cohort: str, record: Any, metrics: Metrics | None = None) -> None:
    """One program run from its ``RunRecord``: outcome, duration, exit code, vCPU, cost."""
    from datetime import datetime

    m = metrics or client()
    common = {"cohort": cohort, "executor": record.executor}
    status = run_status(record.exit_code)
    m.increment("model.runs", 1, {**common, "status": status})
    try:
        seconds = (
            datetime.fromisoformat(record.finished_at) - datetime.fromisoformat(record.started_at)
        ).total_seconds()
        m.distribution("model.duration", seconds, {**common, "status": status})
    except (TypeError, ValueError):
        pass
    m.gauge("model.exit_code", -1 if record.exit_code is None else record.exit_code, common)
    m.distribution("model.vcpu_seconds", record.vcpu_seconds, common)
    m.increment("model.cost_usd", record.cost_usd, common)


def record_delivery_cost(
    cohort: str, executor: str, compute: Any, metrics: Metrics | None = None
) -> None:
    """A cohort's compute in its latest delivery (``pipeline.tasks.base.Compute``)."""
    m = metrics or client()
    tags = {"cohort": cohort, "executor": executor}
    m.gauge("delivery.cost_usd", compute.cost_usd, tags)
    m.gauge("delivery.vcpu_seconds", compute.vcpu_seconds, tags)
    m.gauge("delivery.memory_gib_seconds", compute.memory_gib_seconds, tags)
    m.gauge("delivery.abandoned_cost_usd", compute.abandoned_cost_usd, tags)


def record_validation(
    cohort: str, checks: Iterable[Mapping[str, Any]], metrics: Metrics | None = None
) -> None:
    """Every check of one cohort: ``validate.checks`` by outcome, ``validate.failures``."""
    m = metrics or client()
    for row in checks:
        tags = {"cohort": cohort, "check": row["check"], "severity": row["severity"]}
        passed = bool(row["passed"])
        m.increment("validate.checks", 1, {**tags, "status": "passed" if passed else "failed"})
        m.increment("validate.failures", 0 if passed else 1, tags)


def record_ingest(
    counts: Mapping[str, int],
    warehouse_uri: str,
    cohort: str | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Rows loaded per table into the warehouse (kind only: never the URI)."""
    m = metrics or client()
    kind = warehouse_uri.split(":", 1)[0]
    for table, rows in counts.items():
        m.increment("ingest.rows", rows, {"table": table, "warehouse": kind, "cohort": cohort})


def record_reaped(executors: Iterable[str], metrics: Metrics | None = None) -> None:
    """Orphans stopped by ``pipeline reap``: one count per stopped task, by executor."""
    m = metrics or client()
    for executor, count in Counter(executors).items():
        m.increment("orphans.reaped", count, {"executor": executor})


def record_task(
    family: str,
    cohort: str | None,
    *,
    seconds: float | None = None,
    failed: bool = False,
    metrics: Metrics | None = None,
) -> None:
    """A pipeline task's run time (success) or failure, tagged by step and cohort."""
    m = metrics or client()
    tags = {"step": step_tag(family), "cohort": cohort}
    if failed:
        m.increment("task.failures", 1, tags)
    elif seconds is not None:
        m.distribution("task.duration", seconds, tags)
