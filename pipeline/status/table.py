"""The status as people read it: the columns (shared by ``pipeline status`` and the HTML
report) and the text table. Adding a column (e.g. publication status) is one entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.status.model import STATES, STEPS, CohortStatus, RunStatus, StepStatus


def cell(step: StepStatus) -> str:
    text = step.state
    if step.seconds is not None and step.state != "pending":
        text += f" {_duration(step.seconds)}"
    if step.state == "running" and step.progress is not None:
        text += f" {step.progress:.0f}%"
    return text


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[CohortStatus], str]


COLUMNS: list[Column] = [
    Column("cohort", lambda c: c.cohort),
    Column("variant", lambda c: c.variant),
    *(
        Column(step, lambda c, step=step: cell(c.steps[step]) if step in c.steps else "-")
        for step in STEPS
    ),
    Column("executor", lambda c: c.executor or "-"),
    Column("cost", lambda c: f"${c.compute.cost_usd:,.2f}" if c.compute.submissions else "-"),
    Column("publication", lambda c: c.extra.get("publication", "-")),
]


def render(status: RunStatus) -> str:
    """A text table of cohorts × steps, then one block per failure (error line, log)."""
    lines = [f"Run {status.run_date}   work: {status.work}   logs: {status.logs}"]
    if status.summary:
        s = status.summary
        lines.append(
            f"cleansing: {s['raw_rows']:,} raw rows -> {s['cleansed_rows']:,} cleansed, "
            f"{s['rejected_rows']:,} rejected"
        )
    lines.append(f"survey ingest: {cell(status.survey_ingest)}")
    # One program: its name is in the header line, not in every row.
    columns = [c for c in COLUMNS if c.header != "variant" or len(status.programs) > 1]
    if len(status.programs) == 1:
        lines.insert(1, f"program: {status.program} ({status.cohorts[0].variant})"
                     if status.cohorts else f"program: {status.program}")  # fmt: skip
    table = [[col.header for col in columns]] + [
        [col.value(c) for col in columns] for c in status.cohorts
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines.append("")
    for row in table:
        lines.append("  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip())
    failures = [
        (status.name(c), step) for c in status.cohorts for step in c.steps.values()
        if step.state == "failed" and step.step != "cleanse"
    ]  # fmt: skip
    problems = [("(all)", status.cohorts[0].steps["cleanse"])] if (
        status.cohorts and status.cohorts[0].steps["cleanse"].state == "failed"
    ) else []  # fmt: skip
    if status.survey_ingest.state == "failed":
        problems.append(("(survey)", status.survey_ingest))
    for cohort, step in problems + failures:
        lines += ["", f"{cohort} {step.step} FAILED: {step.error or step.message or ''}"]
        if step.log:
            lines.append(f"    log: {step.log.removeprefix('file://')}")
    stale = [
        (status.name(c), step) for c in status.cohorts for step in c.steps.values()
        if step.state == "pending" and step.message and step.step != "cleanse"
    ]  # fmt: skip
    for cohort, step in stale:
        lines += ["", f"{cohort} {step.step}: {step.message}"]
    counts = {state: sum(c.state == state for c in status.cohorts) for state in STATES}
    lines += ["", "cohorts: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)]
    lines += cost_lines(status)
    return "\n".join(lines)


def cost_lines(status: RunStatus) -> list[str]:
    """The delivery's compute (and each variant's, when several ran), abandoned attempts
    included: for ``pipeline status`` and the summary of ``pipeline run``."""
    lines = [f"cost: {status.cost().text()}"]
    if len(status.programs) > 1:
        variants = {c.program: c.variant for c in status.cohorts}
        lines += [
            f"  variant {variants.get(p, p)}: {status.cost(p).text()}" for p in status.programs
        ]
    return lines
