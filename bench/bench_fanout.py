"""Fan-out: 12 cohorts, 6 workers, a program that sleeps 4 s (`bench/programs/sleeper.py`).

The model phase (first program start to last program end, from the runs' `run.json`) must
take ≤ 1.10 × the ideal of 2 waves × 4 s = 8 s. The same 12 program commands run with
`xargs -P 6` in the same benchmark run for comparison. Medians of 3 runs.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COHORTS, WORKERS, SLEEP, REPEATS = 12, 6, 4.0, 3
IDEAL = SLEEP * -(-COHORTS // WORKERS)


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
        phases, walls, xargs = [], [], []
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
            start = min(datetime.fromisoformat(r["started_at"]) for r in runs)
            end = max(datetime.fromisoformat(r["finished_at"]) for r in runs)
            phases.append((end - start).total_seconds())
            # The same program commands, straight from the job documents, with xargs -P.
            commands = []
            for job_path in sorted(
                (home / "work" / date / "model").glob("*/*/attempts/*/job.json")
            ):
                job = json.loads(job_path.read_text())
                out = job_path.parent / "xargs-out"
                out.mkdir()
                commands.append(
                    shlex.join(
                        [
                            sys.executable,
                            str(REPO / "bench/programs/sleeper.py"),
                            job["input"],
                            str(out),
                            str(SLEEP),
                        ]
                    )
                )
            started = time.monotonic()
            subprocess.run(
                ["xargs", "-P", str(WORKERS), "-I", "{}", "sh", "-c", "{}"],
                input="\n".join(commands), text=True, check=True,
            )  # fmt: skip
            xargs.append(time.monotonic() - started)
    phase = statistics.median(phases)
    return {
        "ideal_s": IDEAL,
        "model_phase_median_s": round(phase, 3),
        "model_phase_ratio_to_ideal": round(phase / IDEAL, 3),
        "xargs_median_s": round(statistics.median(xargs), 3),
        "model_phase_ratio_to_xargs": round(phase / statistics.median(xargs), 3),
        "pipeline_run_wall_median_s": round(statistics.median(walls), 3),
        "target_met (ratio <= 1.10)": phase / IDEAL <= 1.10,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
