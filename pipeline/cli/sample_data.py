"""``pipeline sample-data``: write a realistic raw survey export."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.sampledata import generate


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sample-data",
        help="write a realistic sample raw survey export",
        description="Write a realistic physician-survey export in the raw contract format: "
        "cohorts.csv, frame.csv and response files in UTF-8 (with BOM, CRLF) and CP932, "
        "with the anomalies real exports have. Deterministic for a given --seed.",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument("--cohorts", type=int, default=4, help="number of cohorts (default 4)")
    parser.add_argument(
        "--respondents", type=int, default=2000, help="number of respondents (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    summary = generate(args.out, cohorts=args.cohorts, respondents=args.respondents, seed=args.seed)
    print(f"wrote sample raw export to {args.out}: {summary}")
    return 0
