"""CheckData: the data-quality gate of one cohort, between cleansing and its program run.

Compares the cohort's cleansing figures with recent deliveries and its respondents'
specialty/region mix with the frame (``pipeline.core.quality``). A failed error check
fails this task with the reason, so ``RunModel`` (which requires it) never starts: a
broken export must not cost a fleet of model runs. docs/quality.md.
"""

from __future__ import annotations

import functools
import io
import re

import luigi
import pandas as pd

from pipeline import config, metrics, storage
from pipeline.core.cleanse import REASONS
from pipeline.core.quality import QualityThresholds, cohort_figures, frame_mixes, quality_checks
from pipeline.core.validate import blocking_failures
from pipeline.errors import DataQualityFailed
from pipeline.layout import Layout
from pipeline.tasks.base import RunDateTask
from pipeline.tasks.cleanse import CleanseSurvey
from pipeline.tasks.params import RawParameter

_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})\.json$")


def quality_thresholds() -> QualityThresholds:
    """The ``[quality]`` settings of luigi.cfg: the keys (and which are whole numbers) as
    ``config.SETTINGS`` lists them, the defaults of ``QualityThresholds``."""
    d = QualityThresholds()
    return QualityThresholds(
        **{
            name: (int if kind == config.WHOLE else float)(
                config.get_float("quality", name, getattr(d, name))
            )
            for name, kind in config.SETTINGS["quality"].items()
        }
    )


def recent_figures(layout: Layout, cohort: str, limit: int) -> list[dict]:
    """The figures of the cohort's latest ``limit`` deliveries before ``layout``'s date
    that passed this gate (newest first), from ``quality-history/<cohort>/<date>.json``,
    each with the ``version`` of its file that was read.

    A delivery's record also carries the records it was compared with (``recent``), so
    the newest one answers for the others: one LIST and one GET however long the history
    (it was one GET a delivery). A record is read itself when the newest does not carry
    it, or carried another version of it (its date was run again since)."""
    if limit <= 0:
        return []
    listed = storage.versions(layout.quality_history(cohort))
    dates = sorted(
        (match[1], uri)
        for uri in listed
        if (match := _DATE.search(uri)) and match[1] < layout.run_date
    )[::-1][:limit]
    carried: dict[str, dict] = {}
    records = []
    for date, uri in dates:
        record = carried.get(date)
        if record is None or record.get("version") != listed[uri]:
            record = storage.read_json(uri)
            if not carried:
                carried = {r["run_date"]: r for r in record.get("recent", [])}
        record = {k: v for k, v in record.items() if k != "recent"}
        records.append({**record, "version": listed[uri]})
    return records


def record_figures(layout: Layout, cohort: str, figures: dict, history: list[dict]) -> None:
    """The cohort's figures of ``layout``'s date into its quality history, with the
    ``history`` they were compared with (``recent_figures``: what a later delivery reads
    from this record instead of from each of theirs)."""
    storage.write_json(
        layout.quality_figures(cohort), {"run_date": layout.run_date, **figures, "recent": history}
    )


_NO_REJECTIONS = pd.DataFrame({"cohort": [], "reasons": []}, dtype="string")


def cleansed_outputs(layout: Layout) -> tuple[dict, dict[str, pd.DataFrame], dict]:
    """What every cohort's check reads of the date's cleansing: its summary, its
    rejections by cohort, the frame's mixes (``frame_mixes``). Read once per cleansing
    (its summary's version: one HEAD request) rather than once per cohort: at 200 cohorts,
    600 reads of the same three files, 200 parses of the whole rejections table and 400
    group-bys of the frame."""
    uri = layout.cleanse_summary()
    return _cleansed_outputs(layout, storage.version(uri))


@functools.lru_cache(maxsize=4)
def _cleansed_outputs(layout: Layout, _version: str) -> tuple[dict, dict[str, pd.DataFrame], dict]:
    summary = storage.read_json(layout.cleanse_summary())
    rejections = storage.read_parquet(layout.rejections(), columns=["cohort", "reasons"])
    by_cohort = {
        str(code): rows for code, rows in rejections.groupby(rejections["cohort"].astype("string"))
    }
    frame = pd.read_csv(io.BytesIO(storage.read_bytes(layout.frame())))
    return summary, by_cohort, frame_mixes(frame)


class CheckData(RunDateTask):
    """Writes ``quality/<cohort>.parquet`` (checks) and the cohort's figures to its quality
    history when no error-level check failed; otherwise fails with the failed checks. One
    per cohort whatever the program: the data does not depend on it."""

    cohort = luigi.Parameter(description="Cohort code (one disease).")
    raw = RawParameter(default="", description="Raw export directory (for cleansing).")

    def requires(self) -> CleanseSurvey:
        return CleanseSurvey(run_date=self.run_date, raw=self.raw)

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target(self.layout.quality(self.cohort))

    def run(self) -> None:
        layout, cohort = self.layout, self.cohort
        self.report("checking the cleansed data against recent deliveries", progress=0)
        summary, rejected, population = cleansed_outputs(layout)
        rejections = rejected.get(cohort, _NO_REJECTIONS)
        try:
            cleansed = storage.read_parquet(
                layout.cohort_input(cohort), columns=["specialty", "region"]
            )
        except FileNotFoundError:  # no row of the cohort was kept
            cleansed = pd.DataFrame(columns=["specialty", "region"])
        thresholds = quality_thresholds()
        figures = cohort_figures(cohort, summary, rejections, cleansed, REASONS)
        history = recent_figures(layout, cohort, thresholds.history)
        checks = quality_checks(figures, history, population, thresholds)
        metrics.record_quality(cohort, figures, checks.to_dict("records"))
        errors = blocking_failures(checks)
        failed = checks[~checks["passed"]]
        if len(errors):
            details = "; ".join(f"{r.check}: {r.detail}" for r in errors.itertuples())
            raise DataQualityFailed(
                f"cohort {cohort}: data-quality error, its program does not run: {details}. "
                "Fix the export (or, if the change is real, the [quality] thresholds: "
                "docs/quality.md) and re-run."
            )
        record_figures(layout, cohort, figures, history)
        storage.write_parquet(self.output().path, checks)
        self.report(
            f"{len(checks) - len(failed)}/{len(checks)} data-quality checks passed"
            + (f"; warnings: {', '.join(failed['check'])}" if len(failed) else ""),
            progress=100,
        )
