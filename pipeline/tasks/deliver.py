"""Deliver: the entry point of one delivery (cron and `pipeline run` start here)."""

from __future__ import annotations

import luigi

from pipeline.errors import InputError
from pipeline.tasks.cleanse import check_pinned, known_cohorts
from pipeline.tasks.ingest import IngestResults, IngestSurvey


class Deliver(luigi.WrapperTask):
    """Everything for one run date: cleansing, then per cohort the program run, validation
    and ingest, plus the survey ingest. Done when every cohort is in the warehouse."""

    run_date = luigi.DateParameter(description="Delivery date (YYYY-MM-DD).")
    cohorts = luigi.ListParameter(
        default=(), description="Cohort codes to run (default: every code in cohorts.csv)."
    )
    program = luigi.Parameter(default="", description="Program spec TOML ([pipeline] program).")
    executor = luigi.Parameter(
        default="",
        significant=False,
        description="Where programs run: local, ecs or batch ([pipeline] executor).",
    )
    warehouse = luigi.Parameter(
        default="", description="Warehouse URI (default: [pipeline] warehouse)."
    )

    def selected_cohorts(self) -> list[str]:
        known = list(known_cohorts(self.run_date.isoformat())["code"])
        unknown = [c for c in self.cohorts if c not in known]
        if unknown:
            raise InputError(
                f"unknown cohort(s) {', '.join(unknown)}; known: {', '.join(known)}",
                file="cohorts.csv",
            )
        return list(self.cohorts) or known

    def requires(self) -> list[luigi.Task]:
        check_pinned(self.run_date.isoformat())
        common = {"run_date": self.run_date, "warehouse": self.warehouse}
        return [
            IngestSurvey(**common),
            *(
                IngestResults(**common, cohort=code, program=self.program, executor=self.executor)
                for code in self.selected_cohorts()
            ),
        ]
