"""The ``pipeline`` command. Each sub-command lives in its own module of this package and
registers itself in ``COMMANDS``.

Exit codes: 0 done, 2 an error the user can act on (one line on stderr, no traceback),
130 interrupted, 141 (128 + SIGPIPE, what a shell reports for a program killed by a
closed pipe) when whoever reads the output stops early, e.g. ``pipeline status --run-date D
--json | head -1``: nothing more is written and nothing is said. Sub-commands may return others
(``pipeline run`` returns luigi's ``[retcode]`` codes).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import select
import sys
import threading

from pipeline import config
from pipeline.errors import PipelineError

# Sub-command modules, in the order `pipeline --help` lists them.
COMMANDS = (
    "run",
    "status",
    "rerun",
    "assist",
    "report",
    "sample_data",
    "reap",
    "approve",
    "qa",
    "compare",
    "regress",
)
EXIT_BROKEN_PIPE = 141


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
    """Run ``pipeline ARGV``; as the ``pipeline`` command itself (``argv`` None) the
    process ends through ``_exit`` once the command is done."""
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0].replace("-", "_") if argv else ""
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    code = _run(args)
    if command_line:
        _exit(code)
    return code


# What an interrupted command leaves, for the person who interrupted it.
RESUME = {
    "run": ": the programs it was running were stopped; the same command carries on from "
    "what is done",
    # Run again, a rerun would remove what it redid before the interrupt once more.
    "rerun": ": the programs it was running were stopped; `pipeline run` for the date "
    "carries on from what is done",
}


def _run(args: argparse.Namespace) -> int:
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
        print(f"pipeline {args.command}: interrupted{RESUME.get(args.command, '')}",
              file=sys.stderr)  # fmt: skip
        return 130


def _stdout_closed() -> bool:
    """True when nobody reads stdout any more (the read end of its pipe is closed)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True


def _exit(code: int) -> None:
    """End the process without the interpreter's teardown of every module (pandas,
    pyarrow, DuckDB, luigi): 1-2 s of a one-cohort `pipeline run` on a busy 2-core
    machine, after its work is done. What an exit must do still happens: other
    non-daemon threads are waited for, atexit handlers run (logging, multiprocessing,
    metrics), the standard streams are flushed."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
