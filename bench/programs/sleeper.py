"""A stand-in estimation program for benchmarks: sleeps, then writes a valid result.
Standard library only (CSV input), so it costs nothing but its sleep.

    python bench/programs/sleeper.py INPUT.csv OUTPUT_DIR SECONDS
"""

import csv
import sys
import time
from pathlib import Path

input_path, output_dir, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
time.sleep(seconds)
with open(input_path, newline="", encoding="utf-8") as fh:
    header = next(csv.reader(fh))
rows = "".join(f"{c.removeprefix('share_')},100,90,110\n" for c in header if c.startswith("share_"))
(output_dir / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\n" + rows)
