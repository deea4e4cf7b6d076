"""``pipeline status``: where a run date stands, cohort by cohort and step by step.

The status is collected by ``pipeline.status`` (targets, failure and timing records under
the storage root, luigid's view) and rendered by ``pipeline.status.table``; this module is
the command line.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.cli.run import absolute_path, run_date
from pipeline.errors import InputError
from pipeline.status import collect
from pipeline.status.table import render


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="show the state of every cohort and step of a run date",
        description="Cohorts × steps (cleanse, quality, model, validate, ingest) with state, "
        "duration, executor, cost and, for failures, the error line and the log. Reads the "
        "targets and failure files; with --scheduler-url also asks luigid what is running.",
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
