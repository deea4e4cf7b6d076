"""``pipeline qa``: run the analysts' QA checks on a run date's staging data."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from pipeline import config
from pipeline.cli.run import run_date
from pipeline.warehouse import open_warehouse
from pipeline.warehouse.qa import Thresholds, failures, run_qa


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "qa",
        help="run the QA checks of a run date and print them",
        description="Run the QA SQL shipped with the pipeline (pipeline/warehouse/qa/*.sql: "
        "row counts vs the cleansing summary, cohort coverage, missing segments, estimates "
        "vs the previous published delivery) against the staging dataset, and print one "
        "line per check and cohort. Exits 1 when an error check failed (any check with "
        "--strict).",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--warehouse",
        help="duckdb:///path/file.duckdb or bigquery://PROJECT/DATASET "
        "(default: [pipeline] warehouse, else $PIPELINE_HOME/warehouse.duckdb)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")
    defaults = Thresholds()
    parser.add_argument(
        "--warn-change",
        type=float,
        help="relative change of an estimate vs the previous published delivery that warns "
        f"(default: [warehouse] qa_warn_change, else {defaults.warn_change})",
    )
    parser.add_argument(
        "--fail-change",
        type=float,
        help="relative change that fails "
        f"(default: [warehouse] qa_fail_change, else {defaults.fail_change})",
    )
    parser.set_defaults(func=main)


def _outcome(row: pd.Series) -> str:
    if row["passed"]:
        return "ok"
    return "FAIL" if row["severity"] == "error" else "warn"


def format_table(results: pd.DataFrame) -> str:
    """One aligned line per check and cohort: CHECK, COHORT, RESULT, DETAIL."""
    rows = [
        (str(r["check"]), "-" if pd.isna(r["cohort"]) else str(r["cohort"]), _outcome(r),
         "" if pd.isna(r["detail"]) else str(r["detail"]))
        for _, r in results.iterrows()
    ]  # fmt: skip
    header = ("CHECK", "COHORT", "RESULT", "DETAIL")
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True))
        + "  "
        + line[3]
        for line in [header, *rows]
    )


def main(args: argparse.Namespace) -> int:
    uri = args.warehouse or config.warehouse_uri()
    configured = Thresholds.from_config()
    thresholds = Thresholds(
        warn_change=configured.warn_change if args.warn_change is None else args.warn_change,
        fail_change=configured.fail_change if args.fail_change is None else args.fail_change,
    )
    results = run_qa(open_warehouse(uri), args.run_date, thresholds)
    failed = failures(results, strict=args.strict)
    if args.json:
        records = [
            {
                "check": r["check"],
                "cohort": None if pd.isna(r["cohort"]) else r["cohort"],
                "severity": r["severity"],
                "passed": bool(r["passed"]),
                "detail": None if pd.isna(r["detail"]) else r["detail"],
            }
            for _, r in results.iterrows()
        ]
        report = {
            "run_date": args.run_date.isoformat(),
            "warehouse": uri,
            "passed": failed.empty,
            "checks": records,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(f"QA of {args.run_date} in {uri}")
        print(format_table(results))
        warnings = int((~results["passed"] & (results["severity"] != "error")).sum())
        errors = int((~results["passed"] & (results["severity"] == "error")).sum())
        print(
            f"{len(results)} checks: {errors} failed, {warnings} warning(s)"
            + (" (strict: warnings fail)" if args.strict and warnings else "")
        )
    return 1 if len(failed) else 0
