"""``pipeline report``: a self-contained HTML page for QA about one run date."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import config
from pipeline.cli.run import absolute_path, run_date
from pipeline.errors import InputError
from pipeline.status import collect


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write an HTML report of a run date (estimates, rejections, timeline, checks)",
        description="Write one self-contained HTML page (no external resources) with the "
        "estimates and confidence intervals per cohort and treatment, rejections by "
        "reason, a timeline of each cohort's steps and the validation results.",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--out", type=Path, help="output file (default: $PIPELINE_HOME/reports/<date>.html)"
    )
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
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pipeline import report  # matplotlib: imported by this command only

    status = collect(
        args.run_date,
        cohorts=args.cohort,
        programs=args.program,
        warehouse=args.warehouse or "",
    )
    if not status.ran:
        raise InputError(
            f"no run for {status.run_date} under {status.work}: nothing to report "
            f"(start one with `pipeline run --run-date {status.run_date}`)"
        )
    out = args.out or config.home() / "reports" / f"{args.run_date.isoformat()}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(report.render(status, report.load(status)), encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0
