"""Spot first on a laptop: ``pipeline run`` of the example estimator with the
``spot-interruption`` fault point, which interrupts the first (Spot) submission midway;
the local executor runs the same job again as on-demand, the wrapper restores the
estimator's checkpoint, and the results equal an uninterrupted run's, byte for byte."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.ops.conftest import DATE, cohort_codes, home_env, make_home

ESTIMATOR = REPO / "programs" / "estimator" / "program.toml"
BOOTSTRAP = 5000  # long enough that the interruption at 3 s comes mid-run on a quiet machine


def test_an_interrupted_spot_run_resumes_on_demand_with_the_same_results(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=1, respondents=400, seed=11)
    (cohort,) = cohort_codes(home)
    spec = tmp_path / "spot.toml"
    spec.write_text(
        f'extends = "{ESTIMATOR}"\nspot = "first"\ncheckpoint_interval = "1s"\n'
        f"[params]\nbootstrap = {BOOTSTRAP}\n"
    )
    env = home_env(home, PIPELINE_FAULT="spot-interruption", PIPELINE_FAULT_AFTER="3")
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--local-scheduler",
         "--program", str(spec)],
        cwd=REPO, env={**_base_env(), **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    work = home / "work" / DATE
    (compute_uri,) = work.glob(f"model/{cohort}/*/attempts/*/compute.json")
    compute = json.loads(compute_uri.read_text())
    spot, on_demand = compute["submissions"]
    assert (spot["capacity"], spot["status"]) == ("spot", "abandoned")
    assert spot["interruption"].startswith("SpotInterruption")
    assert (on_demand["capacity"], on_demand["status"]) == ("on_demand", "succeeded")
    assert compute["resumed"] is True
    # The abandoned submission is a pipeline_runs row of its own, as on ECS.
    assert (compute_uri.parent / "abandoned" / "1.json").exists()

    (log,) = (work / "logs" / "programs" / cohort).glob("*.log")
    text = log.read_text()
    assert "interrupted: SpotInterruption" in text and "on on_demand capacity" in text
    resumed = int(re.search(r"resuming after (\d+)/", text).group(1))
    assert 0 < resumed < BOOTSTRAP

    # An uninterrupted run of the same program on the same input: the same bytes.
    control = tmp_path / "control"
    subprocess.run(
        [sys.executable, "-m", "estimator", "--input",
         str(work / "cleanse" / "cohorts" / f"{cohort}.parquet"), "--frame",
         str(work / "cleanse" / "frame.csv"), "--cohort", cohort, "--output-dir", str(control),
         "--bootstrap", str(BOOTSTRAP), "--seed", "20261122"],
        cwd=REPO, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (delivered,) = compute_uri.parent.glob("out/estimates.csv")
    assert delivered.read_bytes() == (control / "estimates.csv").read_bytes()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
