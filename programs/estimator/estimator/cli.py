"""``estimator``: the command line around :func:`estimator.run.run`.

Exit codes: 0 done; 2 bad input or usage (one line on stderr naming the file and column);
1 the results could not be written, or an unexpected error (with its traceback).

This module imports only the standard library: the BLAS thread count has to be settled
before numpy is first imported (see :func:`_default_to_one_blas_thread`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from estimator import DEFAULT_BOOTSTRAP, DEFAULT_SEED, __version__

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 143
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def _default_to_one_blas_thread() -> None:
    """The solves are small (hundreds of features), so BLAS threads only add overhead; and
    with several cohorts running side by side on one machine, threaded BLAS in each
    process oversubscribes the cores (measured: 3 parallel runs took 13-23 s each instead
    of 3 s). An operator who sets any of these variables keeps their choice."""
    if not any(name in os.environ for name in THREAD_VARIABLES):
        for name in THREAD_VARIABLES:
            os.environ[name] = "1"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="estimator",
        description="Estimate patients per treatment in the physician population, with "
        "bootstrap 95%% confidence intervals. Writes estimates.csv and diagnostics.json.",
        epilog="Exit codes: 0 done, 2 bad input or usage, 1 cannot write results or internal "
        "error, 143 stopped by SIGTERM with --checkpoint-dir (the checkpoint is saved).",
    )
    parser.add_argument("--input", type=Path, required=True, help="cohort rows, .parquet or .csv")
    parser.add_argument(
        "--frame",
        type=Path,
        required=True,
        help="population frame CSV: specialty, region, facility_type, n_physicians",
    )
    parser.add_argument("--cohort", required=True, help="cohort code; every input row must have it")
    parser.add_argument(
        "--output-dir", type=Path, required=True, help="where the two result files go"
    )
    parser.add_argument(
        "--bootstrap",
        type=_positive_int,
        default=DEFAULT_BOOTSTRAP,
        help=f"bootstrap replicates; run time grows linearly (default {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="resume the bootstrap from (and save it to) this directory; on SIGTERM the "
        "replicates done are saved and the run exits 143",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code. Sets the BLAS thread variables of this
    process to 1 unless one of them is already set."""
    args = build_parser().parse_args(argv)
    _default_to_one_blas_thread()
    # Imported only now: numpy reads the thread variables when it is first loaded.
    from estimator.model import InputError
    from estimator.run import OutputError, Stopped, run

    try:
        run(
            args.input,
            args.frame,
            args.cohort,
            args.output_dir,
            bootstrap=args.bootstrap,
            seed=args.seed,
            log=lambda message: print(message, flush=True),
            checkpoint_dir=args.checkpoint_dir,
        )
    except InputError as exc:
        print(f"estimator: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except OutputError as exc:
        print(f"estimator: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Stopped as exc:
        print(f"estimator: {exc} (SIGTERM); the checkpoint is saved", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    return EXIT_OK
