"""The steps of a delivery, declared once: what each is called, which luigi task runs it,
what it is done for (the whole run date, a cohort, or a cohort × program variant) and what
it writes. Metrics tag by step, the console and ``pipeline status`` show one column per
step of a cohort, ``pipeline rerun --from STEP`` takes a step: all of them read this
list. The graph's shape (which step needs which) is luigi's: each task's ``requires()``.

Plain data, no luigi: ``pipeline.tasks`` holds the task classes named here (a test checks
both agree), and luigid's metrics collector reads it without importing the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

DELIVERY, DATE, COHORT, VARIANT = "delivery", "run date", "cohort", "variant"


@dataclass(frozen=True)
class Step:
    name: str  # status columns, metric tag "step", `pipeline rerun --from`
    family: str  # the luigi task class in pipeline.tasks
    scope: str  # what one task of the step is done for: DATE, COHORT or VARIANT (DELIVERY:
    # the entry point, which runs nothing of its own)
    writes: str  # what a task of the step writes (docs/architecture.md has the paths)
    label: str = ""  # how the console names it, when not its name
    rerun: bool = False  # `pipeline rerun --from` may start here

    @property
    def shown(self) -> str:
        return self.label or self.name


# In the order data flows. The survey ingest is a branch beside the cohorts' chain.
STEPS: tuple[Step, ...] = (
    Step("cleanse", "CleanseSurvey", DATE, "the raw files' pin, cleansed rows per cohort, "
         "rejections, frame, summary", rerun=True),
    Step("ingest_survey", "IngestSurvey", DATE, "survey responses, rejections, cleansing "
         "summary and frame in the warehouse; a marker per warehouse", label="survey ingest"),
    Step("quality", "CheckData", COHORT, "the data-quality checks before any program runs"),
    Step("model", "RunModel", VARIANT, "the program's results and its run record", rerun=True),
    Step("validate", "ValidateResults", VARIANT, "the validation checks of the results",
         rerun=True),
    Step("ingest", "IngestResults", VARIANT, "results, checks and run records in the "
         "warehouse; a marker per warehouse", rerun=True),
    Step("deliver", "Deliver", DELIVERY, "nothing: done when every step of every cohort is"),
)  # fmt: skip

BY_FAMILY: dict[str, Step] = {step.family: step for step in STEPS}
BY_NAME: dict[str, Step] = {step.name: step for step in STEPS}
# A cohort's own steps, up to the warehouse; its row adds cleansing, which every cohort
# shares.
CHAIN: tuple[str, ...] = tuple(s.name for s in STEPS if s.scope in (COHORT, VARIANT))
ROW: tuple[str, ...] = ("cleanse", *CHAIN)
RERUN_FROM: tuple[str, ...] = tuple(s.name for s in STEPS if s.rerun)


def step_of(family: str) -> Step | None:
    """The step a luigi task family runs, or None for tasks outside the delivery."""
    return BY_FAMILY.get(family)
