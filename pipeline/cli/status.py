"""``pipeline status``: where a run date stands, cohort by cohort and step by step.

The status itself is collected by ``pipeline.status`` (targets, failure and timing
records under the storage root, luigid's view); this module renders it as a table or
JSON. Columns are a list of ``Column``; adding one (e.g. publication status) is one entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.cli.run import absolute_path, run_date
from pipeline.errors import InputError
from pipeline.status import STATES, STEPS, CohortStatus, RunStatus, StepStatus, collect


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="show the state of every cohort and step of a run date",
        description="Cohorts × steps (cleanse, model, validate, ingest) with state, duration, "
        "executor and, for failures, the error line and the log. Reads the targets and "
        "failure files; with --scheduler-url also asks luigid what is running.",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--cohort", action="append", default=[], metavar="CODE", help="only this cohort"
    )
    parser.add_argument(
        "--program",
        action="append",
        type=absolute_path,
        metavar="SPEC",
        help="only this program spec (repeatable; default: every program the date ran)",
    )
    parser.add_argument("--warehouse", help="warehouse URI (default: [pipeline] warehouse)")
    parser.add_argument("--scheduler-url", help="luigid to ask, e.g. http://localhost:8082")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    status = collect(
        args.run_date,
        cohorts=args.cohort,
        programs=args.program,
        warehouse=args.warehouse or "",
        scheduler_url=args.scheduler_url,
    )
    if not status.ran:
        raise InputError(
            f"no run for {status.run_date} under {status.work}: start one with "
            f"`pipeline run --run-date {status.run_date}` (or check [storage] root)"
        )
    if args.json:
        json.dump(status.to_json(), sys.stdout, indent=2, default=str)
        print()
    else:
        print(render(status))
    return 0


# -- rendering ---------------------------------------------------------------------------


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
        (c.cohort, step) for c in status.cohorts for step in c.steps.values()
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
        (c.cohort, step) for c in status.cohorts for step in c.steps.values()
        if step.state == "pending" and step.message and step.step != "cleanse"
    ]  # fmt: skip
    for cohort, step in stale:
        lines += ["", f"{cohort} {step.step}: {step.message}"]
    counts = {state: sum(c.state == state for c in status.cohorts) for state in STATES}
    lines += ["", "cohorts: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)]
    return "\n".join(lines)
