"""``pipeline compare``: program variants of a run date side by side, from the warehouse."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from rich.console import Console
from rich.table import Table

from pipeline import config
from pipeline.cli.run import absolute_path, run_date
from pipeline.compare import Comparison, compare, spot_costs
from pipeline.errors import PipelineError
from pipeline.layout import Layout
from pipeline.tasks.params import canonical_program, load_program
from pipeline.warehouse import open_warehouse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare",
        help="compare program variants of a run date: estimates, differences, cost",
        description="Per cohort and treatment, the estimates of each variant against the "
        "first one (the baseline: the champion, [pipeline] program, when it ran), their "
        "difference (absolute and relative to the baseline) and whether the confidence "
        "intervals overlap; then each variant's cost and program run time (pipeline_runs), "
        "and, for variants that ran on Spot, what Spot saved or cost against on-demand "
        "prices ([cost] in luigi.cfg; every submission's compute.json under the storage "
        "root). Reads the warehouse's staging dataset (what `pipeline run` ingested).",
    )
    parser.add_argument("--run-date", required=True, type=run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="SPEC",
        help="a variant by its spec (repeatable, the first is the baseline; SPEC?NAME=VALUE "
        "for param overrides). Default: every variant ingested for the date",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="SLUG",
        help="a variant by its slug, name-version-fingerprint (repeatable; after --program)",
    )
    parser.add_argument(
        "--cohort", action="append", default=[], metavar="CODE", help="only this cohort"
    )
    parser.add_argument("--warehouse", help="warehouse URI (default: [pipeline] warehouse)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    uri = args.warehouse or config.warehouse_uri()
    wanted = [load_program(canonical_program(absolute_path(p))).slug for p in args.program]
    wanted += list(args.variant)
    champion = None
    with contextlib.suppress(PipelineError):
        champion = load_program(canonical_program("")).slug
    result = compare(
        open_warehouse(uri),
        args.run_date,
        variants=list(dict.fromkeys(wanted)) or None,
        champion=champion,
        cohorts=args.cohort or None,
    )
    result.spot = spot_costs(
        Layout.of(args.run_date), variants=result.variants, cohorts=args.cohort or None
    )
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2, default=str)
        print()
    else:
        render(result, Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160))
    return 0


def _fmt(value: float | None, sign: str = "") -> str:
    if value is None:
        return "-"
    # Estimates are counts of patients (millions) or shares: whole numbers when large.
    return format(value, f"{sign},.0f" if abs(value) >= 1000 else f"{sign}.4g")


def _cell(estimate: float | None, ci: tuple[float | None, float | None]) -> str:
    if estimate is None:
        return "-"
    return f"{_fmt(estimate)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def render(result: Comparison, console: Console) -> None:
    console.print(f"Variants of {result.run_date}; baseline {result.baseline}")
    for other in result.variants[1:]:
        table = Table(title=f"{other} vs {result.baseline}", title_justify="left")
        for header in ("cohort", "treatment", "baseline [CI]", "variant [CI]", "diff", "rel"):
            table.add_column(header, justify="right" if header in ("diff", "rel") else "left")
        table.add_column("CIs overlap")
        for row in (r for r in result.rows if r.variant == other):
            overlap = {True: "yes", False: "[bold red]NO[/]", None: "-"}[row.overlap]
            table.add_row(
                row.cohort,
                row.treatment,
                _cell(row.baseline_estimate, row.baseline_ci),
                _cell(row.estimate, row.ci),
                _fmt(row.difference, "+"),
                "-" if row.relative is None else f"{row.relative:+.1%}",
                overlap,
            )
        console.print(table)
    costs = Table(title="cost and run time per variant", title_justify="left")
    for header in ("variant", "program", "cohorts", "runs", "cost USD", "run time s"):
        costs.add_column(
            header, justify="right" if header not in ("variant", "program") else "left"
        )
    for cost in result.costs:
        costs.add_row(
            cost.variant or "(loaded before variants)",
            cost.program,
            str(cost.cohorts),
            str(cost.runs),
            f"{cost.cost_usd:.4f}",
            f"{cost.run_seconds:.1f}",
        )
    console.print(costs)
    if result.spot:
        spot = Table(
            title="Spot against on-demand prices (\\[cost]; saved < 0: Spot cost more)",
            title_justify="left",
        )
        for header in ("variant", "submissions", "on Spot", "interrupted", "cost USD",
                       "on-demand USD", "saved USD", "interruptions USD"):  # fmt: skip
            spot.add_column(header, justify="left" if header == "variant" else "right")
        for row in result.spot:
            spot.add_row(
                row.variant,
                str(row.submissions),
                str(row.spot_submissions),
                str(row.interrupted),
                f"{row.cost_usd:.6f}",
                f"{row.on_demand_usd:.6f}",
                f"{row.saved_usd:+.6f}",
                f"{row.abandoned_usd:.6f}",
            )
        console.print(spot)
