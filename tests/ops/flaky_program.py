"""A program whose failure has a cause outside its spec: while the file CAUSE names the
cohort, that cohort's run exits 3 ("input rejected"); otherwise it runs
bench/programs/noop.py. Removing the cause does not change the spec, so the cohort's
tasks keep their ids (what "Forgive failures" then re-runs).

    python tests/ops/flaky_program.py CAUSE INPUT OUTPUT_DIR --cohort C [--seconds S]
"""

import runpy
import sys
from pathlib import Path

cause, argv = Path(sys.argv[1]), sys.argv[2:]
cohort = argv[argv.index("--cohort") + 1]
if cause.exists() and cohort in cause.read_text().split():
    print(f"flaky: input rejected for cohort {cohort} (cause: {cause})", file=sys.stderr)
    sys.exit(3)
sys.argv = [str(Path(__file__).parents[2] / "bench" / "programs" / "noop.py"), *argv]
runpy.run_path(sys.argv[0], run_name="__main__")
