"""Deliver: the entry point of one delivery (cron and `pipeline run` start here)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import luigi
import luigi.task

from pipeline.core import rawdata
from pipeline.layout import Layout
from pipeline.tasks.cleanse import check_pinned, known_cohorts, refuse_unknown_cohorts
from pipeline.tasks.ingest import IngestResults, IngestSurvey
from pipeline.tasks.params import (
    ExecutorParameter,
    ProgramsParameter,
    RawParameter,
    WarehouseParameter,
)


class Deliver(luigi.WrapperTask):
    """Everything for one run date: cleansing, then per cohort and program the program
    run, validation and ingest, plus the survey ingest. Done when every cohort of every
    program is in the warehouse."""

    run_date = luigi.DateParameter(description="Delivery date (YYYY-MM-DD).")
    cohorts = luigi.ListParameter(
        default=(), description="Cohort codes to run (default: every code in cohorts.csv)."
    )
    programs = ProgramsParameter(
        default=(),
        description="Program specs, one per variant: a spec or variant TOML, optionally with "
        "param overrides (SPEC?bootstrap=30); default: [pipeline] program. docs/variants.md",
    )
    executor = ExecutorParameter(
        default="", description="Where programs run: local, ecs or batch ([pipeline] executor)."
    )
    warehouse = WarehouseParameter(
        default="", description="Warehouse URI (default: [pipeline] warehouse)."
    )
    raw = RawParameter(
        default="", description="Raw export directory (default: $PIPELINE_HOME/raw)."
    )

    @property
    def layout(self) -> Layout:
        return Layout.of(self.run_date)

    def selected_cohorts(self) -> list[str]:
        """The cohorts this delivery runs; refuses unknown codes, naming the close ones."""
        known = list(known_cohorts(self.layout, self.raw)["code"])
        refuse_unknown_cohorts(
            list(self.cohorts), known, file=str(Path(self.raw) / rawdata.COHORTS_FILE)
        )
        return list(self.cohorts) or known

    def preflight(self) -> list[str]:
        """Everything checked before any work starts (the raw files' pin, the cohorts);
        returns the selected cohorts. ``pipeline run`` calls it to refuse early. Checked
        once per task object: luigi asks ``requires()`` several times per run."""
        return list(self._preflighted)

    @functools.cached_property
    def _preflighted(self) -> tuple[str, ...]:
        check_pinned(self.layout, self.raw)
        return tuple(self.selected_cohorts())

    def requires(self) -> list[luigi.Task]:
        return self.ends(self.preflight())

    def ends(self, cohorts: Sequence[str]) -> list[luigi.Task]:
        """The graph's last tasks for ``cohorts``: the survey ingest, then each program's
        results ingest of each cohort; everything else is what they require. Without the
        preflight checks: ``pipeline status`` and ``rerun`` ask for the shape of a delivery
        whose raw files may not be at hand."""
        common = {"run_date": self.run_date, "warehouse": self.warehouse, "raw": self.raw}
        return [
            IngestSurvey(**common),
            *(
                IngestResults(**common, cohort=code, program=program, executor=self.executor)
                for program in self.programs
                for code in cohorts
            ),
        ]


def upstream(task: luigi.Task) -> list[luigi.Task]:
    """``task`` and every task it needs, each once, every task before the tasks it needs
    (the order to remove outputs in: downstream first)."""
    seen: dict[str, luigi.Task] = {}
    order: list[luigi.Task] = []

    def visit(current: luigi.Task) -> None:
        seen[current.task_id] = current
        for needed in luigi.task.flatten(current.requires()):
            if needed.task_id not in seen:
                visit(needed)
        order.append(current)

    visit(task)
    return order[::-1]
