"""What a run date's status is made of: one ``StepStatus`` per task, a ``CohortStatus`` per
cohort × program, a ``RunStatus`` for the date. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.steps import ROW
from pipeline.tasks.base import Compute

STEPS = ROW  # a cohort row's columns: pipeline.steps declares them
STATES = ("done", "failed", "running", "pending")


@dataclass
class StepStatus:
    """One step of one cohort (or of the whole date: cleanse, survey ingest)."""

    step: str
    task_id: str
    state: str = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    executor: str | None = None
    error: str | None = None  # the failure's first line
    detail: str | None = None  # the rest of the failure record (e.g. the program's last lines)
    log: str | None = None
    message: str | None = None  # luigid's status message, or what the records say
    progress: float | None = None  # luigid's progress percentage


@dataclass
class CohortStatus:
    cohort: str
    steps: dict[str, StepStatus]
    program: str = ""  # the program spec (canonical path) this row ran
    variant: str = ""  # its slug: name-version-fingerprint
    extra: dict[str, Any] = field(default_factory=dict)  # columns added by other modules
    # every program run of the row, abandoned and interrupted attempts included
    compute: Compute = field(default_factory=Compute)

    @property
    def state(self) -> str:
        states = [s.state for s in self.steps.values()]
        for state in ("failed", "running"):
            if state in states:
                return state
        return "done" if all(s == "done" for s in states) else "pending"

    @property
    def executor(self) -> str | None:
        return self.steps["model"].executor


@dataclass
class RunStatus:
    run_date: str
    work: str
    logs: str
    program: str  # the first program (the champion unless told otherwise)
    warehouse: str
    survey_ingest: StepStatus
    cohorts: list[CohortStatus]
    summary: dict[str, Any] | None = None  # cleansing summary.json, once cleansed
    scheduler: str | None = None  # luigid URL when it was asked
    programs: list[str] = field(default_factory=list)  # every program (variant) shown
    ran: bool = False  # anything of this date exists under the storage root

    def cost(self, program: str | None = None) -> Compute:
        """The delivery's compute (of one variant's rows with ``program``)."""
        total = Compute()
        for row in self.cohorts:
            if program is None or row.program == program:
                total = total + row.compute
        return total

    def name(self, row: CohortStatus) -> str:
        """How people read a row: the cohort, and its variant when several ran."""
        return f"{row.cohort} [{row.variant}]" if len(self.programs) > 1 else row.cohort

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cohorts"] = [
            {"cohort": c.cohort, "program": c.program, "variant": c.variant, "state": c.state,
             "executor": c.executor, **c.extra, "cost": c.compute.to_json(),
             "steps": {k: asdict(v) for k, v in c.steps.items()}}
            for c in self.cohorts
        ]  # fmt: skip
        data["cost"] = self.cost().to_json()
        variants = {c.program: c.variant for c in self.cohorts}
        data["cost_by_variant"] = {
            variants.get(p, p): self.cost(p).to_json() for p in self.programs
        }
        return data
