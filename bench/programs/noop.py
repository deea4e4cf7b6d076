"""A no-op estimation program for scheduling benchmarks and ops tests: writes a valid
result (every treatment of the cohort, estimate inside its interval) and exits.

    python bench/programs/noop.py INPUT OUTPUT_DIR [--seconds S] [--cohort C --fail-cohort X]

INPUT is the cohort's rows as CSV (spec ``input_format = "csv"``: only the header is read,
so nothing heavy is imported) or parquet (only the schema is read). ``--seconds`` sleeps
first; ``--fail-cohort`` makes the run of that cohort exit 3 with an error on stderr.
"""

import argparse
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("input")
parser.add_argument("output_dir", type=Path)
parser.add_argument("--seconds", type=float, default=0.0)
parser.add_argument("--cohort", default="")
parser.add_argument("--fail-cohort", default="")
args = parser.parse_args()

if args.seconds:
    time.sleep(args.seconds)
if args.fail_cohort and args.cohort == args.fail_cohort:
    print(f"noop: model did not converge for cohort {args.cohort}", file=sys.stderr)
    sys.exit(3)
if args.input.endswith(".parquet"):
    import pyarrow.parquet as pq

    names = pq.read_schema(args.input).names
else:
    with open(args.input, encoding="utf-8") as fh:
        names = fh.readline().strip().split(",")
treatments = [n.removeprefix("share_") for n in names if n.startswith("share_")]
rows = "".join(f"{t},{50 + 5 * i},{40 + 5 * i},{60 + 5 * i}\n" for i, t in enumerate(treatments))
(args.output_dir / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\n" + rows)
