"""Where a run date stands, cohort by cohort and step by step (``pipeline status``,
``pipeline report`` and the summary of ``pipeline run`` read it).

- ``model``: the status data (steps, cohorts, the date), no I/O;
- ``collect``: gathers it from the storage root (targets, failure and timing records,
  program runs) and the warehouse's sign-off records;
- ``luigid``: luigid's view of the date over its HTTP API, merged into the steps;
- ``table``: the columns and the text table that ``pipeline status`` and the report show.
"""

from pipeline.status.collect import alive, collect
from pipeline.status.model import STATES, STEPS, CohortStatus, RunStatus, StepStatus

__all__ = [
    "STATES",
    "STEPS",
    "CohortStatus",
    "RunStatus",
    "StepStatus",
    "alive",
    "collect",
]
