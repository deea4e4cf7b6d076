"""The ``pipeline`` command. Each sub-command lives in its own module of this package and
registers itself in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import PipelineError

# Sub-command modules, in the order `pipeline --help` lists them.
COMMANDS = ("run", "status", "rerun", "report", "sample_data", "reap", "approve", "qa")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``only``) one with just that sub-command: each command module
    imports what its command needs, so ``pipeline run`` does not import the others'."""
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Survey-to-warehouse ML batch pipeline: cleanse the raw survey export, "
        "run the estimation program per cohort, validate, load the warehouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        importlib.import_module(f"pipeline.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0].replace("-", "_") if argv else ""
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelineError as exc:
        print(f"pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pipeline {args.command}: interrupted", file=sys.stderr)
        return 130
