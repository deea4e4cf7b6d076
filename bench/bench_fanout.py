"""Fan-out (issue 16): 12 cohorts, 6 workers, a program that sleeps 4 s
(`bench/programs/sleeper.py`), local executor, local scheduler.

Ratio = the program phase (first program start to last program end, from the runs'
`run.json`, i.e. what `pipeline_runs` holds) over its ideal, 2 waves × the median program
duration. In the same benchmark run, after each pipeline run, the same 12 program
commands (from the job documents) run as plain luigi tasks (`bench/plain_luigi.py`:
`subprocess.run` in a task, 6 workers), timed the same way. Target: the pipeline's ratio
≤ 1.03, next to plain luigi's. Medians of 3 runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COHORTS, WORKERS, SLEEP, REPEATS = 12, 6, 4.0, 3
WAVES = -(-COHORTS // WORKERS)


def _phase(runs: list[dict]) -> tuple[float, float]:
    """First program start to last program end, and the median program duration."""
    starts = [datetime.fromisoformat(r["started_at"]) for r in runs]
    ends = [datetime.fromisoformat(r["finished_at"]) for r in runs]
    durations = [(e - s).total_seconds() for s, e in zip(starts, ends, strict=True)]
    return (max(ends) - min(starts)).total_seconds(), statistics.median(durations)


def _spec(path: Path) -> Path:
    path.write_text(
        'name = "sleeper"\nversion = "1"\n'
        f'command = ["python", "{REPO / "bench/programs/sleeper.py"}", "{{input}}", '
        '"{output_dir}", "{params.seconds}"]\n'
        'input_format = "csv"\ntimeout = "5m"\n[outputs]\nresults = "estimates.csv"\n'
        f"[params]\nseconds = {SLEEP}\n"
    )
    return path


def run() -> dict[str, float]:
    from pipeline.sampledata import generate

    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        home = Path(tmp)
        generate(home / "raw", cohorts=COHORTS, respondents=COHORTS * 150, seed=1)
        spec = _spec(home / "sleeper.toml")
        env = {**os.environ, "PIPELINE_HOME": str(home), "PIPELINE_RESPONDENT_KEY": "bench"}
        phases, walls, ratios, plain_phases, plain_ratios = [], [], [], [], []
        for i in range(REPEATS):
            date = f"2026-01-{i + 1:02d}"
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "run", "--run-date", date,
                 "--workers", str(WORKERS), "--local-scheduler", "--program", str(spec)],
                cwd=REPO, env=env, capture_output=True, text=True,
            )  # fmt: skip
            walls.append(time.monotonic() - started)
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline run failed:\n{proc.stdout}\n{proc.stderr}")
            runs = [
                json.loads(p.read_text())
                for p in (home / "work" / date / "model").glob("*/*/run.json")
            ]
            assert len(runs) == COHORTS, f"{len(runs)} runs"
            phase, median_program = _phase(runs)
            phases.append(phase)
            ratios.append(phase / (WAVES * median_program))
            # The same program commands, straight from the job documents, as plain luigi
            # tasks (luigi's worker, the same number of worker processes).
            commands = []
            for job_path in sorted(
                (home / "work" / date / "model").glob("*/*/attempts/*/job.json")
            ):
                job = json.loads(job_path.read_text())
                out = job_path.parent / "plain-out"
                out.mkdir()
                commands.append([sys.executable, str(REPO / "bench/programs/sleeper.py"),
                                 job["input"], str(out), str(SLEEP)])  # fmt: skip
            listing = home / f"commands-{i}.json"
            listing.write_text(json.dumps(commands))
            records = home / f"plain-{i}"
            records.mkdir()
            subprocess.run(
                [sys.executable, "-m", "bench.plain_luigi", str(listing), str(WORKERS),
                 str(records)],
                cwd=REPO, env=env, check=True, capture_output=True,
            )  # fmt: skip
            plain = [json.loads(p.read_text()) for p in records.glob("*.json")]
            assert len(plain) == COHORTS, f"{len(plain)} plain runs"
            plain_phase, plain_program = _phase(plain)
            plain_phases.append(plain_phase)
            plain_ratios.append(plain_phase / (WAVES * plain_program))
    ratio, plain_ratio = statistics.median(ratios), statistics.median(plain_ratios)
    return {
        "program_s": SLEEP,
        "pipeline: program phase median_s": round(statistics.median(phases), 3),
        "pipeline: phase / (2 waves x median program)": round(ratio, 3),
        "pipeline: ratio runs": [round(r, 3) for r in ratios],
        "plain luigi: program phase median_s": round(statistics.median(plain_phases), 3),
        "plain luigi: phase / (2 waves x median program)": round(plain_ratio, 3),
        "plain luigi: ratio runs": [round(r, 3) for r in plain_ratios],
        "pipeline_run_wall_median_s": round(statistics.median(walls), 3),
        "target_met (pipeline ratio <= 1.03)": ratio <= 1.03,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
