"""Overhead: for one cohort, `pipeline run` wall time minus the program's own run time
(the wrapper's `program_seconds` in the manifest) must be ≤ 0.5 s (issue 16; was ≤ 3 s).
Sample data with the default size (4 cohorts, 2,000 respondents), the real estimator,
the local scheduler; the whole command is timed, so start-up, cleansing, validation and
ingest all count. Split at the program: ``pre`` (the command's start to the program's
start, the manifest's ``started_at``: start-up, cleansing, data checks, the job and the
wrapper) and ``post`` (the program's end to the command's exit: the manifest, validation,
ingest, the summary).
Median of 5 runs, each on a new run date. The package is byte-compiled first (``python -m
compileall pipeline``), as any installed copy is (pip compiles a wheel at install; the
images install one): with PYTHONDONTWRITEBYTECODE set, an editable checkout would
otherwise compile ~50 modules in every run (~0.13 s here), which no user pays.
Floors, interleaved with the runs (median of 5 each): a fresh interpreter that only
imports what cleansing needs before a program can start — luigi, pandas (the respondent
key is ``pandas.util.hash_array``'s SipHash), pyarrow's compute, CSV and Parquet modules
— and exits; the same without pandas; and the wrapper's interpreter (a local program runs
under ``python -m pipeline.wrapper``, a process of its own, as in its container), which
starts in every run before the program can. The first and the last together are what a
run costs before any of its own work.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPEATS = 5
FLOORS = {
    "luigi, pandas, pyarrow": "luigi, pandas, pyarrow.compute, pyarrow.csv, pyarrow.parquet",
    "luigi, pyarrow (no pandas)": "luigi, pyarrow.compute, pyarrow.csv, pyarrow.parquet",
    "the wrapper's own (pipeline.wrapper)": "pipeline.wrapper",
}


def run() -> dict[str, float | bool]:
    from pipeline.core.rawdata import read_cohorts
    from pipeline.sampledata import generate

    subprocess.run([sys.executable, "-m", "compileall", "-q", "pipeline"], cwd=REPO, check=True)
    measured: dict[str, list[float]] = {name: [] for name in ("wall", "program", "pre", "post")}
    floors: dict[str, list[float]] = {name: [] for name in FLOORS}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        home = Path(tmp)
        generate(home / "raw", seed=2)
        cohort = read_cohorts(home / "raw")["code"].iloc[0]
        env = {**os.environ, "PIPELINE_HOME": str(home), "PIPELINE_RESPONDENT_KEY": "bench"}
        for i in range(REPEATS):
            date = f"2026-02-{i + 1:02d}"
            started, clock = time.monotonic(), time.time()
            proc = subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "run", "--run-date", date,
                 "--cohort", cohort, "--workers", "1", "--local-scheduler"],
                cwd=REPO, env=env, capture_output=True, text=True,
            )  # fmt: skip
            wall = time.monotonic() - started
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline run failed:\n{proc.stdout}\n{proc.stderr}")
            (manifest,) = (home / "work" / date / "model").glob("*/*/attempts/*/out/manifest.json")
            record = json.loads(manifest.read_text())
            program = record["program_seconds"]
            pre = dt.datetime.fromisoformat(record["started_at"]).timestamp() - clock
            measured["wall"].append(wall)
            measured["program"].append(program)
            measured["pre"].append(pre)
            measured["post"].append(wall - pre - program)
            for name, imports in FLOORS.items():
                started = time.monotonic()
                subprocess.run([sys.executable, "-c", f"import {imports}"], cwd=REPO, check=True)
                floors[name].append(time.monotonic() - started)
    overheads = [w - p for w, p in zip(measured["wall"], measured["program"], strict=True)]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    return {
        "wall_median_s": median(measured["wall"]),
        "program_median_s": median(measured["program"]),
        "overhead_median_s": median(overheads),
        "overhead_max_s": round(max(overheads), 3),
        "pre (start to program start) median_s": median(measured["pre"]),
        "post (program end to exit) median_s": median(measured["post"]),
        **{f"floor: interpreter + {name} median_s": median(floors[name]) for name in FLOORS},
        "target_met (median overhead <= 0.5 s)": statistics.median(overheads) <= 0.5,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
