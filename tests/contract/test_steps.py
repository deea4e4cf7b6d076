"""The delivery's steps are declared once (``pipeline.steps``) and agree with the luigi
graph: each names a task class of ``pipeline.tasks``, every task class of the delivery
has a step, and the order of a cohort's chain is the order ``requires()`` gives."""

from __future__ import annotations

import datetime as dt

import luigi
import luigi.task

import pipeline.tasks
from pipeline.steps import CHAIN, ROW, STEPS, step_of

DATE = dt.date(2026, 11, 22)


def test_every_step_names_a_task_and_every_task_has_a_step() -> None:
    classes = {
        name: obj
        for name, obj in vars(pipeline.tasks).items()
        if isinstance(obj, type) and issubclass(obj, luigi.Task)
    }
    for step in STEPS:
        assert step.family in classes, f"step {step.name}: no task class {step.family}"
        assert classes[step.family].get_task_family() == step.family
    external = {n for n, c in classes.items() if issubclass(c, luigi.ExternalTask)}
    stepless = sorted(set(classes) - external - {s.family for s in STEPS})
    assert not stepless, f"delivery tasks without a step in pipeline.steps: {stepless}"


def test_a_cohorts_chain_is_the_order_requires_gives(pipeline_home) -> None:
    ingest = pipeline.tasks.IngestResults(run_date=DATE, cohort="asthma", program="")
    chain, task = [], ingest
    while task is not None:
        step = step_of(task.task_family)
        if step is not None:
            chain.append(step.name)
        upstream = [t for t in luigi.task.flatten(task.requires()) if step_of(t.task_family)]
        task = upstream[0] if upstream else None
    assert tuple(reversed(chain)) == ROW
    assert ROW[1:] == CHAIN
