"""Spot first with checkpoints (issue 24): what an interruption costs in program time.

The example estimator (programs/estimator, 12,000 bootstrap replicates of one sample
cohort: 30-60 s on a shared 2-core machine) is interrupted at 50 % of an uninterrupted
run's program time by the `spot-interruption` fault point (SIGTERM, as Fargate Spot sends
it), on its Spot submission; the executor submits the same job document again on
on-demand capacity, which restores the checkpoint the wrapper saved on SIGTERM. Measured:
the program time of every submission, summed (the wrapper's "program exited ... after Ns"
lines), against the program time of an uninterrupted run of the same job measured just
before it (pairs, so that the load of a shared machine drifts less between the two);
medians of 3 pairs.
The interruption comes at half of the pair's uninterrupted time; a run that finished
before it (the machine got faster) was not interrupted, is not counted, and is run again
(counted in "runs that finished before the interruption").

- local: `pipeline run --local-scheduler` of a spec extending the estimator's with
  `spot = "first"`, and the fault point.
- ecs: the ECS executor against a local `moto_server`, an agent playing the ECS agent and
  Fargate Spot (tests/cloud/test_spot_first.py: it runs the real wrapper; a loopback layer
  gives DescribeTasks the container's exit code and `stopCode SpotInterruption`).
- ecs without checkpoints: the same program without `--checkpoint-dir`, interrupted once:
  the submissions by capacity (target: exactly one Spot and one on-demand, never a second
  Spot attempt) and its program time ratio (no target: the Spot half is thrown away).

Target: total program time across attempts ≤ 1.15 × one uninterrupted run (local and ecs).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ESTIMATOR = REPO / "programs" / "estimator" / "program.toml"
DATE = "2026-11-22"
# A quick try of the benchmark itself: BENCH_SPOT_BOOTSTRAP=800 BENCH_SPOT_REPEATS=1.
BOOTSTRAP = int(os.environ.get("BENCH_SPOT_BOOTSTRAP") or 12000)
RESPONDENTS = 600
REPEATS = int(os.environ.get("BENCH_SPOT_REPEATS") or 3)
EXITED = re.compile(r"program exited with (-?\d+) after ([\d.]+)s")


def _program_seconds(text: str) -> list[float]:
    return [float(m.group(2)) for m in EXITED.finditer(text)]


def _spec(path: Path, bootstrap: int = BOOTSTRAP) -> Path:
    path.write_text(
        f'extends = "{ESTIMATOR}"\nspot = "first"\ncheckpoint_interval = "5s"\n'
        f"[params]\nbootstrap = {bootstrap}\n"
    )
    return path


# -- local: pipeline run ---------------------------------------------------------------
def _local_run(tmp: Path, name: str, spec: Path, fault_after: float | None) -> list[float]:
    sys.path.insert(0, str(REPO))
    from tests.ops.conftest import home_env, make_home

    home = make_home(tmp / name, cohorts=1, respondents=RESPONDENTS, seed=11)
    extra = {}
    if fault_after is not None:
        extra = {"PIPELINE_FAULT": "spot-interruption", "PIPELINE_FAULT_AFTER": f"{fault_after}"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(home_env(home, **extra))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--local-scheduler",
         "--program", str(spec)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pipeline run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    (log,) = (home / "work" / DATE / "logs" / "programs").rglob("*.log")
    return _program_seconds(log.read_text())


def _local(tmp: Path) -> dict[str, Any]:
    spec = _spec(tmp / "spot.toml")
    return _pairs(
        "local",
        lambda name: _local_run(tmp, name, spec, None),
        lambda name, half: _local_run(tmp, name, spec, half),
    )


def _pairs(
    prefix: str,
    whole_run: Callable[[str], list[float]],
    interrupted_run: Callable[[str, float], list[float]],
) -> dict[str, Any]:
    """REPEATS pairs: an uninterrupted run, then one interrupted at half its program time
    (again while the interrupted one finished before the interruption, at most 3 times)."""
    whole, totals, halves, early = [], [], [], 0
    for i in range(REPEATS):
        for again in range(4):
            seconds = sum(whole_run(f"w{i}-{again}"))
            runs = interrupted_run(f"i{i}-{again}", seconds / 2)
            if len(runs) == 2:
                break
            early += 1
        else:
            raise RuntimeError(f"{prefix}: pair {i} was never interrupted")
        whole.append(seconds)
        halves.append(seconds / 2)
        totals.append(sum(runs))
        print(f"{prefix} pair {i}: {seconds:.1f}s whole, {runs} interrupted", flush=True)
    ratios = [t / w for t, w in zip(totals, whole, strict=True)]
    return {
        f"{prefix}: uninterrupted program s (median of {REPEATS})": statistics.median(whole),
        f"{prefix}: interrupted at s (median)": round(statistics.median(halves), 2),
        f"{prefix}: interrupted, program s across both submissions (median)": round(
            statistics.median(totals), 2
        ),
        f"{prefix}: median of the pairs' ratios (target <= 1.15)": round(
            statistics.median(ratios), 3
        ),
        f"{prefix}: ratio of the medians": round(
            statistics.median(totals) / statistics.median(whole), 3
        ),
        f"{prefix}: pairs' ratios": ", ".join(f"{r:.3f}" for r in ratios),
        f"{prefix}: runs that finished before the interruption": early,
    }


# -- ecs: the executor against moto, the agent playing Fargate Spot ---------------------
def _ecs(tmp: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from bench.bench_cloud import _start_moto
    from tests.cloud import conftest as cloud_conftest

    proc, url = _start_moto(tmp / "moto.log")
    saved = dict(os.environ)
    try:
        env = cloud_conftest.aws_env(url)
        os.environ.update(env)
        os.environ["PIPELINE_STORAGE_ROOT"] = f"s3://{cloud_conftest.BUCKET}/work"
        os.environ["PIPELINE_HOME"] = str(tmp / "ecs-home")
        cloud = cloud_conftest.Cloud(url, env, os.environ["PIPELINE_STORAGE_ROOT"],
                                     tmp / "ecs-home")  # fmt: skip
        cloud.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        cloud_conftest._setup(cloud)
        return _ecs_runs(tmp, cloud)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        proc.terminate()
        proc.wait(timeout=30)


def _ecs_runs(tmp: Path, cloud: Any) -> dict[str, Any]:
    from tests.cloud.test_spot_first import SpotAgent, run_ecs

    home = _sample_home(tmp)

    def ecs_run(name: str, interrupt_after: float | None = None) -> list[float]:
        agent = SpotAgent(cloud, interrupt_after=interrupt_after)
        record, _ = run_ecs(cloud, _ecs_job(tmp, home, name), agent)
        assert record.exit_code == 0, record
        return _program_seconds("".join(agent.outputs))

    metrics = _pairs("ecs", ecs_run, ecs_run)
    half = metrics["ecs: interrupted at s (median)"]
    # Without checkpoints: one Spot attempt, then one on-demand attempt from the start.
    agent = SpotAgent(cloud, interrupt_after=half)
    record, requests = run_ecs(cloud, _ecs_job(tmp, home, "n0", checkpoints=False), agent)
    capacities = [r.capacity for r in [*record.interrupted, record]]
    metrics["ecs without checkpoints: submissions by capacity"] = ", ".join(capacities)
    metrics["ecs without checkpoints: Spot submissions (target 1)"] = capacities.count("spot")
    metrics["ecs without checkpoints: program s ratio (no target)"] = round(
        sum(_program_seconds("".join(agent.outputs))) / (2 * half), 3
    )
    assert len(requests) == 2
    return metrics


def _sample_home(tmp: Path) -> Path:
    """A local delivery's cleansed cohort and frame: the ECS runs' input."""
    from tests.ops.conftest import home_env, make_home

    home = make_home(tmp / "ecs-input", cohorts=1, respondents=RESPONDENTS, seed=11)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "AWS_"))}
    env.update(home_env(home))
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--local-scheduler",
         "--program", str(_spec(tmp / "tiny.toml", bootstrap=10))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return home


def _ecs_job(tmp: Path, home: Path, name: str, *, checkpoints: bool = True) -> Any:
    from pipeline import storage
    from pipeline.core.job import JobDocument
    from pipeline.core.spec import load_spec, spec_from_dict
    from pipeline.executors import Job

    base_spec = load_spec(ESTIMATOR)
    data = base_spec.to_dict()
    data["params"]["bootstrap"] = BOOTSTRAP
    data["spot"] = "first"
    data["image"] = "toy:1.0"  # the test cluster's task definition image: no derived one
    if checkpoints:
        data["checkpoint_interval"] = 5
    else:
        data.pop("checkpoint_dir"), data.pop("checkpoint_interval")
        data["command"] = data["command"][: data["command"].index("--checkpoint-dir")]
    spec = spec_from_dict(data, source=f"bench-{name}")
    work = home / "work" / DATE / "cleanse"
    (cohort_file,) = (work / "cohorts").glob("*.parquet")
    prefix = f"{os.environ['PIPELINE_STORAGE_ROOT']}/{DATE}"
    storage.write_bytes(f"{prefix}/cleanse/cohorts/{cohort_file.name}", cohort_file.read_bytes())
    storage.write_bytes(f"{prefix}/cleanse/frame.csv", (work / "frame.csv").read_bytes())
    cohort = cohort_file.stem
    model = f"{prefix}/model/{cohort}/{spec.slug}-{name}"
    attempt = f"20261122T000000Z-{name}"
    document = JobDocument(
        spec=spec, run_date=DATE, cohort=cohort, attempt=attempt,
        input=f"{prefix}/cleanse/cohorts/{cohort_file.name}",
        frame=f"{prefix}/cleanse/frame.csv", output=f"{model}/attempts/{attempt}/out",
        grace_seconds=30, checkpoint=f"{model}/checkpoint" if checkpoints else "",
    )  # fmt: skip
    job = Job(
        run_date=DATE, cohort=cohort, spec=spec, attempt=attempt,
        job_uri=f"{model}/attempts/{attempt}/job.json", output_uri=document.output,
        log_path=tmp / "logs" / f"{name}.log",
    )  # fmt: skip
    storage.write_json(job.job_uri, document.to_dict())
    return job


def run() -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-spot-") as tmp:
        metrics = _local(Path(tmp))
        metrics.update(_ecs(Path(tmp)))
    metrics["bench seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(metrics, indent=2), flush=True)
    return metrics
