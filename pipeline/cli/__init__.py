"""The ``pipeline`` command. Each sub-command lives in its own module of this package and
registers itself in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import PipelineError

# Sub-command modules, in the order `pipeline --help` lists them.
COMMANDS = (
    "run", "status", "rerun", "report", "sample_data", "reap", "approve", "qa", "regress",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Survey-to-warehouse ML batch pipeline: cleanse the raw survey export, "
        "run the estimation program per cohort, validate, load the warehouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pipeline.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelineError as exc:
        print(f"pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pipeline {args.command}: interrupted", file=sys.stderr)
        return 130
