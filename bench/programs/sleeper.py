"""A stand-in estimation program for benchmarks: sleeps, then writes a valid result.

    python bench/programs/sleeper.py INPUT OUTPUT_DIR SECONDS
"""

import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

input_path, output_dir, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
time.sleep(seconds)
treatments = [n.removeprefix("share_") for n in pq.read_schema(input_path).names
              if n.startswith("share_")]  # fmt: skip
rows = "".join(f"{t},100,90,110\n" for t in treatments)
(output_dir / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\n" + rows)
