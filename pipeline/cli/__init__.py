"""The ``pipeline`` command. Each sub-command lives in its own module of this package and
registers itself in ``COMMANDS``.

Exit codes: 0 done, 2 an error the user can act on (one line on stderr, no traceback),
130 interrupted, 141 (128 + SIGPIPE, what a shell reports for a program killed by a
closed pipe) when whoever reads the output stops early, e.g. ``pipeline status --json |
head -1``: nothing more is written and nothing is said. Sub-commands may return others
(``pipeline run`` returns luigi's ``[retcode]`` codes).
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from pipeline import config
from pipeline.errors import PipelineError

# Sub-command modules, in the order `pipeline --help` lists them.
COMMANDS = (
    "run",
    "status",
    "rerun",
    "report",
    "sample_data",
    "reap",
    "approve",
    "qa",
    "compare",
    "regress",
)
EXIT_BROKEN_PIPE = 141


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
        config.check()  # a misspelt key or a word for a number: say so before doing anything
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a program's, a socket): a real error
        # The reader went away (`| head`). Point stdout at devnull so that Python's own
        # flush at exit does not fail again (the recipe of the signal module's docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except PipelineError as exc:
        print(f"pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pipeline {args.command}: interrupted", file=sys.stderr)
        return 130


def _stdout_closed() -> bool:
    """True when nobody reads stdout any more (the read end of its pipe is closed)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True
