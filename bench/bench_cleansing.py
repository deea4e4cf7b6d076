"""Cleansing throughput: reading + cleansing a large raw export against a bare pyarrow parse.

Generates a sample export of about ``rows`` response rows once (``pipeline.sampledata``),
then in this one process measures, as the median of ``repeats`` runs:

- ``pyarrow_parse_s``: ``pyarrow.csv.read_csv`` of the same response files with default
  options (type inference; the CP932 file through ``ReadOptions(encoding="cp932")``), the
  least any CSV reader of these files has to do;
- ``cleanse_s``: ``read_raw_export`` + ``cleanse`` end to end (``read_s`` + ``rules_s``).

``ratio`` = cleanse_s / pyarrow_parse_s (target: at most 3); the single runs are listed
too (``*_runs_s``, in order; the first run of a process also warms it up). ``peak_rss_mib`` is
the maximum resident set size of a fresh subprocess that reads and cleanses the export once.
Run ``python bench/bench_cleansing.py [--rows N] [--out DIR]``; it prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyarrow.csv as pacsv  # noqa: E402

from pipeline.core.cleanse import CleanseRules, cleanse  # noqa: E402
from pipeline.core.rawdata import read_raw_export  # noqa: E402
from pipeline.sampledata import generate  # noqa: E402

TARGET_RATIO = 3.0
ROWS_PER_RESPONDENT = 1.8655  # what sampledata.generate yields on average with 4 cohorts
_KEY = b"bench-only-key"


def run(rows: int = 1_000_000, out_dir: Path | None = None, repeats: int = 3) -> dict[str, Any]:
    """Measure and return the numbers (see the module docstring).

    ``out_dir`` keeps the generated export (and reuses one made earlier for the same
    ``rows``); without it the export lives in a temporary directory.
    """
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-cleansing-") as tmp:
            return _run(rows, Path(tmp), repeats)
    return _run(rows, Path(out_dir), repeats)


def _run(rows: int, out_dir: Path, repeats: int) -> dict[str, Any]:
    base = out_dir / f"cleansing-{rows}"
    sample = _sample(base, rows)
    raw_dir = base / "raw"
    responses = {
        path: encoding
        for path, encoding in sample["encodings"].items()
        if path.startswith("responses/")
    }

    def parse() -> None:
        for path, encoding in responses.items():
            codec = "cp932" if encoding == "cp932" else "utf8"
            pacsv.read_csv(raw_dir / path, read_options=pacsv.ReadOptions(encoding=codec))

    timings: dict[str, list[float]] = {"read": [], "rules": []}

    def read_and_cleanse() -> None:
        start = time.perf_counter()
        export = read_raw_export(raw_dir)
        middle = time.perf_counter()
        cleanse(export, CleanseRules(), _KEY)
        timings["read"].append(middle - start)
        timings["rules"].append(time.perf_counter() - middle)

    parse_runs = _timed(parse, repeats)
    cleanse_runs = _timed(read_and_cleanse, repeats)
    parse_s, cleanse_s = statistics.median(parse_runs), statistics.median(cleanse_runs)
    n = int(sample["rows"])
    input_bytes = sum((raw_dir / path).stat().st_size for path in responses)
    return {
        "rows": n,
        "input_mib": round(input_bytes / 2**20, 1),
        "pyarrow_parse_s": round(parse_s, 3),
        "cleanse_s": round(cleanse_s, 3),
        "read_s": round(statistics.median(timings["read"]), 3),
        "rules_s": round(statistics.median(timings["rules"]), 3),
        "ratio": round(cleanse_s / parse_s, 2),
        "pyarrow_parse_runs_s": [round(t, 3) for t in parse_runs],
        "cleanse_runs_s": [round(t, 3) for t in cleanse_runs],
        "target_ratio": TARGET_RATIO,
        "meets_target": cleanse_s / parse_s <= TARGET_RATIO,
        "pyarrow_rows_per_s": round(n / parse_s),
        "cleanse_rows_per_s": round(n / cleanse_s),
        "peak_rss_mib": _peak_rss_mib(raw_dir),
        "cpus": os.cpu_count(),
    }


def _sample(base: Path, rows: int) -> dict[str, Any]:
    """Generate the export into ``base/raw`` unless ``base/sample.json`` says it is there."""
    marker = base / "sample.json"
    if marker.exists():
        return json.loads(marker.read_text())
    respondents = max(1, round(rows / ROWS_PER_RESPONDENT))
    sample = generate(base / "raw", respondents=respondents, seed=0)
    sample["rows"] = int(sample["rows"])
    marker.write_text(json.dumps(sample))
    return sample


def _timed(action: Callable[[], None], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def _peak_rss_mib(raw_dir: Path) -> float:
    """Max RSS of a fresh process that reads and cleanses ``raw_dir`` once."""
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(raw_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(done.stdout)["peak_rss_mib"])


def _rss_child(raw_dir: Path) -> None:
    cleanse(read_raw_export(raw_dir), CleanseRules(), _KEY)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_rss_mib": round(peak_kib / 1024, 1)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="response rows to generate")
    parser.add_argument("--out", type=Path, help="keep (and reuse) the generated export here")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child)
        return
    print(json.dumps(run(args.rows, args.out, args.repeats), indent=2))


if __name__ == "__main__":
    main()
