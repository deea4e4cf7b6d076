"""A cohort whose input is ready starts its program while other cohorts are still being
prepared: the run does not check every cohort's data before it starts the first program.

One worker slot (``--workers 1``), so the data checks run one after another; program runs
take no slot (``RunModel.waits_in_thread``), and luigi hands out a cohort's program as
soon as its check is done (it ranks tasks by priority, then by the order they were
scheduled: depth first, cohort by cohort). The first program must start before the last
cohort's data check ends; the survey's load (IngestSurvey) comes after the checks."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ops.conftest import DATE, make_home, noop_spec, pipeline


def test_a_ready_cohort_starts_while_others_are_still_checked(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=8, respondents=400)
    spec = noop_spec(tmp_path / "noop.toml", seconds=1.0)
    done = pipeline(home, "run", "--run-date", DATE, "--local-scheduler", "--workers", "1",
                    "--program", str(spec))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(p.read_text())
               for p in (home / "work" / DATE / "logs" / "tasks").glob("*.json")]  # fmt: skip
    checks = [r for r in records if r["task_family"] == "CheckData"]
    runs = [r for r in records if r["task_family"] == "RunModel"]
    assert len(checks) == len(runs) == 8
    first_program = min(r["started_at"] for r in runs)
    last_check = max(r["finished_at"] for r in checks)
    assert first_program < last_check, (first_program, last_check)
    # ... and programs overlap the checks, not only the first one.
    overlapping = [r for r in runs if r["started_at"] < last_check]
    assert len(overlapping) >= 2, sorted((r["cohort"], r["started_at"]) for r in runs)
    # The survey's load does not hold up the programs: with one slot it waits for the
    # checks (their priority is the programs'), and loads while programs still run.
    (survey,) = [r for r in records if r["task_family"] == "IngestSurvey"]
    assert survey["started_at"] >= last_check
    assert survey["started_at"] < max(r["finished_at"] for r in runs)


def test_the_local_scheduler_prunes_once_a_second_not_on_every_get_work(monkeypatch) -> None:
    import luigi.scheduler

    from pipeline import worker

    scheduler = worker.WorkerSchedulerFactory().create_local_scheduler()
    assert isinstance(scheduler, worker.LocalScheduler)
    pruned: list[float] = []
    real_prune = luigi.scheduler.Scheduler.prune
    monkeypatch.setattr(
        worker.LocalScheduler, "prune", lambda self: (pruned.append(1), real_prune(self))
    )
    clock = [1000.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: clock[0])
    for n in range(5):
        scheduler.add_task(worker="w", task_id=f"t{n}", status="PENDING", runnable=True)
    replies = [scheduler.get_work(worker="w") for _ in range(50)]
    assert len(pruned) == 1
    # get_work itself still answers: each task handed out once, then nothing
    assert sorted(r["task_id"] for r in replies[:5]) == [f"t{n}" for n in range(5)]
    assert {r["task_id"] for r in replies[5:]} == {None}
    clock[0] += worker.LOCAL_PRUNE_SECONDS
    scheduler.get_work(worker="w")
    assert len(pruned) == 2


def test_the_local_scheduler_counts_pending_tasks_as_luigi_does() -> None:
    """``LocalScheduler.count_pending`` skips luigi's walk up the dependencies when no task
    is DISABLED; its reply is luigi's own, with a DISABLED task or without."""
    import luigi.scheduler

    from pipeline import worker

    scheduler = worker.LocalScheduler()
    scheduler.add_worker("w", [("host", "here")])
    scheduler.add_worker("other", [("host", "there")])
    add = scheduler.add_task
    add(worker="w", task_id="root", status="PENDING", deps=["a", "b", "c"], runnable=True)
    add(worker="w", task_id="a", status="PENDING", deps=["a0"], runnable=True)
    add(worker="w", task_id="a0", status="DONE", runnable=True)
    add(worker="w", task_id="b", status="PENDING", deps=["b0"], runnable=True)
    add(worker="other", task_id="b", status="PENDING", deps=["b0"], runnable=True)
    add(worker="w", task_id="b0", status="FAILED", runnable=True)
    add(worker="w", task_id="c", status="PENDING", runnable=True)
    add(worker="other", task_id="d", status="PENDING", runnable=True)
    assert scheduler.get_work(worker="w")["task_id"] in ("a", "c")  # one RUNNING here
    assert scheduler.get_work(worker="other")["task_id"] == "d"  # one RUNNING elsewhere
    add(worker="w", task_id="d", status="PENDING", runnable=True)  # ours too, running there

    def both(worker_id: str) -> tuple[dict, dict]:
        ours = scheduler.count_pending(worker_id)
        luigis = luigi.scheduler.Scheduler.count_pending(scheduler, worker_id)
        return ours, luigis

    for worker_id in ("w", "other"):
        ours, luigis = both(worker_id)
        assert ours == luigis
    before = both("w")[0]
    assert before["n_pending_tasks"] >= 3 and before["running_tasks"]
    # A DISABLED task: the tasks above it (b, root) no longer count, as in luigi.
    add(worker="w", task_id="b0", status="DISABLED", runnable=True)
    ours, luigis = both("w")
    assert ours == luigis
    # Only the one of a, c not running is left: b0 is DISABLED, b and root are above it.
    assert ours["n_pending_tasks"] == 1 < before["n_pending_tasks"]
