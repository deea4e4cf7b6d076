"""``pipeline approve``: sign off cohorts of a run date and publish them to clients."""

from __future__ import annotations

import argparse
import sys

from pipeline import config
from pipeline.cli.run import run_date
from pipeline.errors import WarehouseError
from pipeline.regress import approval_gate
from pipeline.warehouse import open_warehouse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "approve",
        help="sign off cohorts of a run date and publish them to the clients' views",
        description="Record who signs off which cohort's results (and of which program "
        "version), and copy that cohort's rows of every table from the staging to the "
        "published dataset in one transaction per cohort. Cohorts that are not ingested or "
        "whose error checks failed are refused and stay unpublished, and so are cohorts "
        "whose program build failed its golden cases (`pipeline regress`) unless "
        "--accept-regression gives a reason, which is recorded with the approval. Exits 1 "
        "when any cohort was refused.",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--cohort",
        action="append",
        default=[],
        metavar="CODE",
        help="approve this cohort (repeatable; default: every cohort ingested for the date)",
    )
    parser.add_argument("--by", required=True, metavar="NAME", help="who signs off")
    parser.add_argument(
        "--accept-regression",
        default="",
        metavar="REASON",
        help="approve even though the program build failed its golden cases, for this "
        "reason (recorded in the approvals table; docs/quality.md)",
    )
    parser.add_argument(
        "--warehouse",
        help="duckdb:///path/file.duckdb or bigquery://PROJECT/DATASET "
        "(default: [pipeline] warehouse, else $PIPELINE_HOME/warehouse.duckdb)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    uri = args.warehouse or config.warehouse_uri()
    warehouse = open_warehouse(uri)
    date = args.run_date
    cohorts = list(dict.fromkeys(args.cohort)) or list(warehouse.publication_status(date)["cohort"])
    if not cohorts:
        raise WarehouseError(
            f"nothing of {date} is ingested into {uri}: nothing to approve "
            f"(run `pipeline run --run-date {date}` first)"
        )
    print(f"Approving {date} in {uri} as {args.by!r}")
    refused = []
    root = config.storage_root()
    for cohort in cohorts:
        gate = approval_gate(warehouse, root, date, cohort, args.accept_regression)
        if gate.refused:
            refused.append(cohort)
            print(f"  {cohort:<20} REFUSED: {gate.refused}", file=sys.stderr)
            continue
        accepted = args.accept_regression.strip() if gate.failed else None
        try:
            approval = warehouse.approve(date, cohort, args.by, accepted_regression=accepted)
        except WarehouseError as exc:
            refused.append(cohort)
            print(f"  {cohort:<20} REFUSED: {exc}", file=sys.stderr)
            continue
        rows = ", ".join(f"{n:,} {table}" for table, n in approval.rows.items() if n)
        print(
            f"  {cohort:<20} approved ({approval.program_name} {approval.program_version}), "
            f"published: {rows}"
        )
        if gate.note:
            print(f"  {'':<20} golden cases: {gate.note}")
    print(
        f"  {len(cohorts) - len(refused)} of {len(cohorts)} cohort(s) published to "
        f"{warehouse.published_dataset}; clients read its v_* views"
    )
    return 1 if refused else 0
