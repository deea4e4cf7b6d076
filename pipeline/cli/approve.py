"""``pipeline approve``: sign off cohorts of a run date and publish them to clients."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import sys

from pipeline import config
from pipeline.cli.run import absolute_path, run_date
from pipeline.errors import PipelineError, WarehouseError
from pipeline.layout import Layout
from pipeline.regress import approval_gate, find_result, program_builds
from pipeline.tasks.cleanse import known_cohorts, refuse_unknown_cohorts
from pipeline.tasks.params import canonical_program, load_program
from pipeline.warehouse import Approval, connections, open_warehouse
from pipeline.warehouse.shared import PUBLISH_BATCH, choose_variant


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "approve",
        help="sign off cohorts of a run date and publish them to the clients' views",
        description="Record who signs off which cohort's results (and of which program "
        "variant), and copy that cohort's rows of every table from the staging to the "
        "published dataset — all of a cohort's tables or none, in transactions of up to "
        f"{PUBLISH_BATCH} cohorts (one that fails is tried again in halves, so a refused "
        "cohort does not hold back the others) — of one variant only: the champion "
        "([pipeline] program) unless --program or --variant names another. "
        "Cohorts that are not ingested or whose error checks failed are refused and stay "
        "unpublished, and so are cohorts whose program build has no passing golden-case "
        "record (`pipeline regress`) under the storage root (PIPELINE_STORAGE_ROOT, else "
        "[storage] root, else $PIPELINE_HOME/work) — none, or a failed one — unless "
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
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--program",
        metavar="SPEC",
        help="publish the results of this program spec (a variant TOML, or SPEC?NAME=VALUE "
        "for param overrides); default: the champion, [pipeline] program",
    )
    which.add_argument(
        "--variant",
        metavar="SLUG",
        help="publish this variant (name-version-fingerprint, as `pipeline compare` shows it)",
    )
    parser.add_argument(
        "--accept-regression",
        default="",
        metavar="REASON",
        help="approve although the program build has no passing `pipeline regress` record "
        "(none, or its golden cases failed), for this reason (recorded in "
        "approvals.accepted_regression)",
    )
    parser.add_argument(
        "--warehouse",
        help="duckdb:///path/file.duckdb or bigquery://PROJECT/DATASET "
        "(default: [pipeline] warehouse, else $PIPELINE_HOME/warehouse.duckdb)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # One connection to a DuckDB file for the whole command, not one per query: opening
    # the file and checkpointing it at close were most of a cohort's approval.
    with connections.shared():
        return approve(args)


def approve(args: argparse.Namespace) -> int:
    uri = args.warehouse or config.warehouse_uri()
    warehouse = open_warehouse(uri)
    date = args.run_date
    check_cohorts(date, args.cohort)
    cohorts = list(dict.fromkeys(args.cohort)) or list(warehouse.publication_status(date)["cohort"])
    if not cohorts:
        raise WarehouseError(
            f"nothing of {date} is ingested into {uri}: nothing to approve "
            f"(run `pipeline run --run-date {date}` first)"
        )
    variant, champion, spec = None, None, ""
    if args.variant:
        variant = args.variant
    elif args.program:
        spec = canonical_program(absolute_path(args.program))
        variant = load_program(spec).slug
    else:
        with contextlib.suppress(PipelineError):  # no usable champion: the only variant
            spec = canonical_program("")
            champion = load_program(spec).slug
    chosen = variant or (f"champion {champion}" if champion else "the only variant")
    print(f"Approving {date} in {uri} as {args.by!r} ({chosen})")
    refused = []
    root = config.storage_root()
    print(f"  golden cases: looking for `pipeline regress` records under {root}")
    # What every cohort is decided on, read once: a query per cohort, one after another,
    # was seconds each on BigQuery (the publish transaction still checks what changed).
    facts = warehouse.approval_facts(date)
    builds = None
    with contextlib.suppress(WarehouseError):  # the gate refuses each cohort, saying why
        builds = program_builds(warehouse, date)
    find = functools.cache(find_result)  # the cohorts of a delivery share their builds
    checked: list[tuple[Approval, str]] = []  # with the gate's note
    for cohort in cohorts:
        try:
            # The gate checks the build of the variant that is published, not another one.
            publish = choose_variant(
                facts.variants(cohort), variant, run_date=date, cohort=cohort, champion=champion
            )
            hint = spec if publish and publish in (variant, champion) else ""
            gate = approval_gate(
                warehouse, root, date, cohort, args.accept_regression, variant=publish,
                spec=hint, builds=builds, find=find,
            )  # fmt: skip
            if gate.refused:
                raise WarehouseError(gate.refused)
            approval = warehouse.check_approval(
                date, cohort, args.by, variant=publish or variant, champion=champion,
                accepted_regression=gate.accepted or None, facts=facts,
            )  # fmt: skip
        except WarehouseError as exc:
            refused.append(cohort)
            print(f"  {cohort:<20} REFUSED: {exc}", file=sys.stderr)
            continue
        checked.append((approval, gate.note))
    if checked:
        # Together: one transaction for many cohorts, where BigQuery ran each cohort's
        # statements as child jobs of their own, seconds each.
        print(f"  publishing {len(checked)} cohort(s)")
    outcomes = warehouse.publish([approval for approval, _ in checked])
    for (approval, note), outcome in zip(checked, outcomes, strict=True):
        cohort = approval.cohort
        if isinstance(outcome, WarehouseError):
            refused.append(cohort)
            print(f"  {cohort:<20} REFUSED: {outcome}", file=sys.stderr)
            continue
        rows = ", ".join(f"{n:,} {table}" for table, n in outcome.rows.items() if n)
        print(
            f"  {cohort:<20} approved ({outcome.program_name} {outcome.program_version}"
            f"{', ' + outcome.variant if outcome.variant else ''}), published: {rows}"
        )
        if note:
            print(f"  {'':<20} golden cases: {note}")
    print(
        f"  {len(cohorts) - len(refused)} of {len(cohorts)} cohort(s) published to "
        f"{warehouse.published_dataset}; clients read its v_* views"
    )
    return 1 if refused else 0


def check_cohorts(date: dt.date, asked: list[str]) -> None:
    """Refuse a cohort code the date does not have, naming the close ones, before any
    sign-off is recorded (a typo must not read as "not ingested: run it first")."""
    try:
        known = list(known_cohorts(Layout.of(date), str(config.raw_dir()))["code"])
    except PipelineError:
        return  # neither run nor a raw export here: the warehouse will say what it has
    refuse_unknown_cohorts(asked, known, file=None)
