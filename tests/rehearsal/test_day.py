"""One production day, rehearsed on this machine with the real parts (``day.py``).

The cron schedule's command (read from Terraform) delivers 12 cohorts × two variants on
ECS (moto) through luigid (started with its Terraform container command) into the
BigQuery stand-in, with DogStatsD on a UDP socket. During the day: a person watches from
a laptop; the orchestrator is SIGKILLed and cron's command is run again; luigid is
SIGKILLed and restarted; one cohort's program fails, is fixed and re-run; QA runs; the
regress gate stops an approval until ``make regress`` (as Jenkins runs it) records a
pass; one variant is published. At the end the warehouse equals a clean run of the same
day on both backends, and the metrics Terraform's monitors query are the ones sent.

The steps share one day (module scope) and run in the order of the day: each test
continues where the previous one left it. The day's timeline: the first half of the
cohorts ends (one fails) while the second half runs (b); the laptop looks (c); the
orchestrator is killed with the second half running, three of those cohorts end while
nobody watches, the same command adopts them and re-attaches to the rest, luigid dies
and comes back, the day finishes (d); the laptop looks again (c, afterwards); fix, QA,
gate, publish (e); compare with a clean day (f); metrics (g).

Choices a reader should know about:
- The schedule's command has no way to name a second variant in config (``pipeline
  run`` takes ``--program``; ``[pipeline] program`` is the champion only), so the
  rehearsal appends ``--program CHAMPION --program CHALLENGER`` to it.
- luigid gets ``--address 127.0.0.1`` (loopback only here) and, through its config
  override, ``worker_disconnect_delay = 2`` and ``prune_on_get_work``: luigi notices a
  killed worker only after 60 s by a 60 s timer, which a restarted run waits for
  (``test_d_...``); the override makes that wait seconds, not minutes.
- ECS tasks use the EC2 launch type (moto cannot start Fargate tasks).
- The BigQuery stand-in is the day's warehouse (PIPELINE_WAREHOUSE, as the stack sets
  it); DuckDB gets the day's data by the same cron command with a DuckDB URI (only the
  loads run), and the clean day is run once per backend the same way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import duckdb
import pytest

from pipeline.executors.lease import LeaseStore
from tests.cloud.conftest import moto_server  # noqa: F401  (the session's moto_server)
from tests.cloud.helpers import wait_for
from tests.conftest import REPO
from tests.faults.conftest import comparable
from tests.rehearsal.day import (
    BQ_PROJECT,
    DATE,
    ENV,
    Day,
    metric_uses,
    monitored_queries,
    open_day,
    storage_url,
)

COHORTS = 12
VARIANTS = 2


@pytest.fixture(scope="module")
def day(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:  # noqa: F811
    the_day = open_day(tmp_path_factory.mktemp("day"), moto_server)
    started = time.monotonic()
    try:
        yield the_day
    finally:
        print(f"rehearsal: the day took {time.monotonic() - started:.1f}s after its setup")
        the_day.close()
        the_day.notes["httpserver"].stop()


def output(proc: subprocess.Popen[bytes]) -> str:
    return Path(proc.out_path).read_text(errors="replace")  # type: ignore[attr-defined]


def status_json(day: Day, env: dict[str, str], *extra: str) -> dict[str, Any]:
    result = day.cli("status", "--run-date", DATE, "--json", *extra, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def model_states(status: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["cohort"], c["variant"]): c["steps"]["model"]["state"] for c in status["cohorts"]}


def fingerprint(spec: Path) -> str:
    from pipeline.core.spec import load_spec

    return load_spec(spec).fingerprint


def slug(spec: Path) -> str:
    from pipeline.core.spec import load_spec

    return load_spec(spec).slug


# ---------------------------------------------------------------------------- b. cron


def test_b_cron_runs_every_program_at_once_and_one_cohort_fails(day: Day) -> None:
    first_half = day.codes[: COHORTS // 2]
    assert day.failing in first_half
    run = day.cron()
    day.notes["run1"] = run

    def all_running() -> list[dict[str, Any]] | None:
        tasks = day.tasks(running=True)
        at_once = len(tasks) == COHORTS * VARIANTS and day.agent.alive() == COHORTS * VARIANTS
        return tasks if at_once else None

    try:
        # All programs at once: moto's RUNNING tasks and the agent's live wrappers. The
        # assertions below read this one snapshot of moto's tasks (CI once saw a second
        # listing a moment later miss one task whose wrapper ran on for minutes).
        tasks = wait_for(all_running, timeout=120,
                         what=f"{COHORTS * VARIANTS} programs RUNNING at once")  # fmt: skip
    except AssertionError:
        raise AssertionError(output(run)) from None
    assert day.agent.max_live == COHORTS * VARIANTS
    assert day.agent.errors == []
    # The cron command went through luigid: it lists every RunModel as RUNNING.
    running = [t for t in day.luigid.running() if t.startswith("RunModel")]
    assert len(running) == COHORTS * VARIANTS, running
    # One lease store, one run date, both variants' specs, each cohort twice.
    specs = {fingerprint(day.champion), fingerprint(day.challenger)}
    tags = [{t["key"]: t["value"] for t in task["tags"]} for task in tasks]
    assert {t["spec"] for t in tags} == specs
    assert {t["lease_store"] for t in tags} == {day.root}
    assert sorted(t["cohort"] for t in tags) == sorted(day.codes * VARIANTS)
    # The first half ends (the failing cohort among them); the second half keeps running.
    day.open_gate(*first_half)
    failures = f"{day.root}/{DATE}/logs/failures/"

    def first_half_settled() -> bool:
        return len(day.tasks(running=True)) == COHORTS * VARIANTS // 2 and (
            len(list_keys(day, failures)) >= VARIANTS
        )

    wait_for(first_half_settled, timeout=90, what="the first half's programs to end")
    assert run.poll() is None, output(run)  # still delivering the second half
    texts = [get_object(day, key) for key in list_keys(day, failures)]
    model_failures = [t for t in texts if "model did not converge" in t]
    assert len(model_failures) == VARIANTS, texts  # the failing cohort, both variants
    assert all(day.failing in t.splitlines()[0] for t in model_failures)


def list_keys(day: Day, uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    pages = day.cloud.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [f"s3://{bucket}/{o['Key']}" for page in pages for o in page.get("Contents", [])]


def get_object(day: Day, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return day.cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode(errors="replace")


# ---------------------------------------------------------------------------- c. laptop


def open_link(day: Day, url: str) -> str:
    """What a person gets opening a log link of ``pipeline status``: the S3 object, the
    CloudWatch stream's events or the ECS task (read from moto with boto3)."""
    parsed = urlparse(url)
    if parsed.netloc == "s3.console.aws.amazon.com":
        bucket = parsed.path.rsplit("/", 1)[-1]
        (key,) = parse_qs(parsed.query)["prefix"]
        return get_object(day, f"s3://{bucket}/{key}")
    if "cloudwatch/home" in parsed.path:
        match = re.fullmatch(r"logsV2:log-groups/log-group/([^/]+)/log-events/([^/]+)",
                             parsed.fragment)  # fmt: skip
        assert match, url
        group, stream = (unquote(unquote(p.replace("$", "%"))) for p in match.groups())
        events = day.cloud.logs.get_log_events(logGroupName=group, logStreamName=stream)
        return "\n".join(e["message"] for e in events["events"])
    match = re.search(r"/ecs/v2/clusters/([^/]+)/tasks/([^/]+)/", parsed.path)
    if match:
        (task,) = day.cloud.ecs.describe_tasks(cluster=match[1], tasks=[match[2]])["tasks"]
        return json.dumps(task, default=str)
    raise AssertionError(f"a log link nobody can open from a laptop: {url}")


def test_c_a_laptop_sees_the_run_while_it_goes(day: Day) -> None:
    run = day.notes["run1"]
    second_half = day.codes[COHORTS // 2 :]
    champion, challenger = slug(day.champion), slug(day.challenger)
    url = day.luigid.url
    # The laptop's PIPELINE_HOME knows the storage root, luigid and the warehouse only.
    assert not (Path(day.laptop_env["PIPELINE_HOME"]) / "work").exists()

    def settled() -> dict[str, Any] | None:
        status = status_json(day, day.laptop_env, "--scheduler-url", url)
        done = [c for c in status["cohorts"] if c["state"] == "done"]
        return status if len(done) == COHORTS - 2 else None

    status = wait_for(settled, timeout=90, what="the first half delivered, seen from a laptop")
    assert run.poll() is None, output(run)
    states = model_states(status)
    expected = {}
    for code in day.codes:
        for variant in (champion, challenger):
            if code in second_half:
                expected[(code, variant)] = "running"
            elif code == day.failing:
                expected[(code, variant)] = "failed"
            else:
                expected[(code, variant)] = "done"
    assert states == expected
    # Every log link the laptop is given opens: task logs in S3, the failed programs'
    # CloudWatch streams or ECS tasks, the program logs named in the error lines.
    opened = 0
    for row in status["cohorts"]:
        for step in row["steps"].values():
            if step["log"] and step["state"] in ("done", "failed"):
                text = open_link(day, step["log"])
                assert text.strip(), step["log"]
                opened += 1
        if row["cohort"] == day.failing:
            model = row["steps"]["model"]
            assert "ProgramFailed" in model["error"], model
            assert "exited with 3 on ecs" in model["error"], model  # what the program did
            assert "model did not converge" in (model["detail"] or "") + model["error"], model
            logs = re.findall(r"s3://\S+\.log", (model["detail"] or "") + model["error"])
            assert logs, model
            assert "model did not converge" in get_object(day, logs[0].rstrip(";,."))
    assert opened >= (COHORTS - 2) * 4, opened
    day.notes["laptop_status_mid_run"] = status
    # The text form names the running cohorts too.
    text = day.cli("status", "--run-date", DATE, "--scheduler-url", url, env=day.laptop_env)
    assert text.returncode == 0, text.stderr
    for code in second_half:
        line = next(ln for ln in text.stdout.splitlines() if ln.split()[:1] == [code])
        assert "running" in line, line
    # Report and compare work from the laptop, on what is delivered so far.
    out = Path(day.laptop_env["PIPELINE_HOME"]) / "report.html"
    report = day.cli("report", "--run-date", DATE, "--out", str(out), env=day.laptop_env)
    assert report.returncode == 0, report.stdout + report.stderr
    html = out.read_text()
    assert f"<b>{day.failing} model</b>: ProgramFailed" in html
    assert html.count("class='state-running'>running") == len(second_half) * VARIANTS
    compare = day.cli("compare", "--run-date", DATE, "--json", "--variant", champion,
                      "--variant", challenger, env=day.laptop_env)  # fmt: skip
    assert compare.returncode == 0, compare.stdout + compare.stderr
    data = json.loads(compare.stdout)
    assert data["baseline"] == champion and set(data["variants"]) == {champion, challenger}
    compared = {r["cohort"] for r in data["rows"]}
    assert compared == set(day.codes[: COHORTS // 2]) - {day.failing}
    assert all(abs(r["difference"] - 0.5) < 1e-9 for r in data["rows"]), data["rows"][:3]


# ---------------------------------------------------------------------------- d. kill


def reap(day: Day, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The reaper schedule's command, as terraform/modules/platform declares it."""
    from tests.infra.tf import MODULES, Module

    schedules = Module(MODULES / "platform").labelled("module")["schedules"]["schedules"]
    command = schedules["reaper"]["command"]
    assert command[0] == "pipeline", command
    return day.cli(*command[1:], env=env)


def test_d_killed_orchestrator_and_luigid_the_same_command_finishes_the_day(day: Day) -> None:
    run1 = day.notes["run1"]
    second_half = day.codes[COHORTS // 2 :]
    ends_unwatched, ends_last = second_half[:3], second_half[3:]
    # The orchestrator's host dies: SIGKILL its process group (sh exec'd pipeline run).
    os.killpg(run1.pid, signal.SIGKILL)
    assert run1.wait(timeout=20) == -signal.SIGKILL
    killed_at = time.monotonic()
    # Its luigi log so far is on the storage root (uploaded every [run] log_upload_interval).
    logs = list_keys(day, f"{day.root}/{DATE}/logs/runs/")
    assert len(logs) == 1, logs
    text = get_object(day, logs[0])
    assert "RunModel" in text and "ProgramFailed" in text, text[-2000:]
    # Three cohorts' programs end while nobody watches; the others keep running.
    day.open_gate(*ends_unwatched)
    wait_for(lambda: len(day.tasks(running=True)) == len(ends_last) * VARIANTS, timeout=60,
             what="the unwatched programs to end")  # fmt: skip
    before = {t["taskArn"] for t in day.tasks()}
    # luigid still lists the dead worker's tasks as RUNNING (until it prunes that worker):
    # the command run again at once waits for luigid to release them, then adopts the
    # finished programs and re-attaches to the running tasks.
    assert [t for t in day.luigid.running() if t.startswith("RunModel")]
    run2 = day.cron()
    day.notes["run2"] = run2

    def adopted() -> bool:
        # A run's own lease is deleted whenever its last cloud task ends: read what is left.
        store = LeaseStore(day.cloud.s3)
        leases = [store.read(k) for k in list_keys(day, f"{day.root}/_leases/")]
        return any(doc and doc.get("adopted_by") for doc in leases)

    try:
        wait_for(adopted, timeout=90, what="the restart to adopt the running tasks' lease")
    except AssertionError:
        raise AssertionError(output(run2)) from None
    # The reaper (its schedule's command) keeps what the restart adopted, once the dead
    # run's own lease has expired.
    time.sleep(max(0.0, 4.5 - (time.monotonic() - killed_at)))
    kept = reap(day, day.worker_env)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "stopped ecs" not in kept.stdout, kept.stdout
    running = {t["taskArn"] for t in day.tasks(running=True)}
    assert len(running) >= len(ends_last) * VARIANTS and running <= before | running
    # luigid dies while programs run (OOM, a lost host); ECS starts it again, from the
    # state file of its last clean shutdown.
    saved = day.luigid.state_path.stat().st_mtime_ns
    day.luigid.kill()
    time.sleep(2)  # the worker meets connection errors meanwhile
    day.luigid.start()
    assert day.luigid.state_path.stat().st_mtime_ns == saved
    day.open_gate(*ends_last)
    try:
        code = run2.wait(timeout=150)
    except subprocess.TimeoutExpired:
        raise AssertionError(output(run2)) from None
    out = output(run2)
    day.notes["run2_output"] = out
    # The delivery finished in that run: everything but the broken cohort.
    assert code == 30, out  # [retcode] task_failed: the failing cohort, nothing else
    assert f"cohorts: {COHORTS * VARIANTS - VARIANTS} done, {VARIANTS} failed" in out, out
    assert "not run" not in out, out
    # The operator watching it is told that it takes over a run that stopped (having
    # waited for luigid to release that run's tasks, when luigid had not yet).
    told = r"^\d\d:\d\d:\d\d warning: .*(of a run that stopped|stopped answering)"
    assert re.search(told, out, re.M), out
    assert day.agent.errors == []
    # No program ran twice: one wrapper start per cohort x variant (from the agent's
    # record), one program start each (the programs' own record); the broken cohort ran
    # once in each run (a new run retries a failed cohort, as it should).
    specs = {fingerprint(day.champion): 0.0, fingerprint(day.challenger): 0.5}
    expected = {
        (code, spec): 2 if code == day.failing else 1 for code in day.codes for spec in specs
    }
    assert dict(day.agent.starts(day.root)) == expected
    assert dict(day.program_starts(day.root)) == {
        (code, specs[spec]): n for (code, spec), n in expected.items()
    }
    # The attempt records agree: one prepared attempt (job.json) per program start.
    slugs = {fingerprint(s): slug(s) for s in (day.champion, day.challenger)}
    jobs: dict[tuple[str, str], int] = {}
    for key in list_keys(day, f"{day.root}/{DATE}/model/"):
        found = re.search(r"/model/([^/]+)/([^/]+)/attempts/[^/]+/job\.json$", key)
        if found:
            jobs[(found[1], found[2])] = jobs.get((found[1], found[2]), 0) + 1
    assert jobs == {(code, slugs[spec]): n for (code, spec), n in expected.items()}
    # Every task the day started was started by RunTask once: the ones before the kill
    # plus the broken cohort's retry; no re-attached cohort got a second task.
    after = day.tasks()
    assert len(after) == COHORTS * VARIANTS + VARIANTS
    retried = {tuple(sorted(tags.items())) for t in after if t["taskArn"] not in before
               for tags in [{x["key"]: x["value"] for x in t["tags"]}]}  # fmt: skip
    assert {dict(t)["cohort"] for t in retried} == {day.failing}
    # The reaper leaves nothing running.
    reaped = reap(day, day.worker_env)
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    assert day.tasks(running=True) == []
    assert day.agent.alive() == 0


# ---------------------------------------------------------------------------- c, after


def test_c_afterwards_the_laptop_sees_done_and_failed_with_logs_that_open(day: Day) -> None:
    status = status_json(day, day.laptop_env, "--scheduler-url", day.luigid.url)
    champion, challenger = slug(day.champion), slug(day.challenger)
    states = model_states(status)
    assert states == {
        (code, v): "failed" if code == day.failing else "done"
        for code in day.codes
        for v in (champion, challenger)
    }
    for row in status["cohorts"]:
        model = row["steps"]["model"]
        assert model["log"], row
        text = open_link(day, model["log"])
        if row["cohort"] == day.failing:
            assert "model did not converge" in text or "STOPPED" in text, text[:500]
        else:
            assert text.strip()
    text = day.cli("status", "--run-date", DATE, env=day.laptop_env)
    assert text.returncode == 0, text.stderr
    assert f"cohorts: {COHORTS * VARIANTS - VARIANTS} done, {VARIANTS} failed" in text.stdout


# ---------------------------------------------------------------------------- e. fix, QA, gate


def jenkins_regress_stage() -> tuple[str, dict[str, str]]:
    """The Regress stage of jenkins/Jenkinsfile: its shell command and, for a build of
    main, its environment."""
    text = (REPO / "jenkins" / "Jenkinsfile").read_text()
    stage = text[text.index("stage('Regress')") :]
    stage = stage[: stage.index("stage(", 10)]
    (command,) = re.findall(r"sh '([^']+)'", stage)
    env = {}
    for name, expr in re.findall(r'(\w+) = "\$\{([^}]*)\}"', stage):
        main = re.fullmatch(r"env\.BRANCH_NAME == 'main' \? '([^']*)' : '([^']*)'", expr)
        assert main, expr
        env[name] = main[1]
    return command, env


def published(day: Day, table: str) -> list[tuple]:
    from tests.warehouse.bqfake import _qualified

    return day.bq.sql(f"SELECT * FROM {_qualified(BQ_PROJECT, 'survey_published', table)}")


def test_e_fix_rerun_qa_and_the_regress_gate_before_publishing_one_variant(day: Day) -> None:
    champion, challenger = slug(day.champion), slug(day.challenger)
    # What made it fail is fixed (the program's reference file), then exactly that
    # cohort runs again from its model, every variant the date ran.
    (day.state / "faults" / day.failing).unlink()
    rerun = day.cli("rerun", "--run-date", DATE, "--cohort", day.failing, "--from", "model",
                    "--yes", env=day.worker_env, timeout=240)  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    status = status_json(day, day.worker_env)
    assert set(model_states(status).values()) == {"done"}
    assert all(c["state"] == "done" for c in status["cohorts"]), status["cohorts"]
    starts = day.agent.starts(day.root)
    assert {k: n for k, n in starts.items() if k[0] == day.failing} == {
        (day.failing, fingerprint(spec)): 3 for spec in (day.champion, day.challenger)
    }
    assert day.tasks(running=True) == []
    # QA on the warehouse: every check of pipeline/warehouse/qa runs, none fails.
    qa = day.cli("qa", "--run-date", DATE, "--json", env=day.worker_env)
    assert qa.returncode == 0, qa.stdout + qa.stderr
    report = json.loads(qa.stdout)
    assert report["passed"] is True and report["run_date"] == DATE, report
    results = report["checks"]
    checks = {p.stem for p in (REPO / "pipeline" / "warehouse" / "qa").glob("*.sql")}
    assert {r["check"] for r in results} == checks
    assert not [r for r in results if not r["passed"] and r["severity"] == "error"], results
    covered = {r["cohort"] for r in results if r["check"] == "cohort_coverage" and r["passed"]}
    assert set(day.codes) <= covered, results
    # The gate: no regress record for the champion's build where approve looks.
    refused = day.cli("approve", "--run-date", DATE, "--by", "Jane Doe", env=day.worker_env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "regress" in (refused.stdout + refused.stderr), refused.stdout + refused.stderr
    if (BQ_PROJECT, "survey_published", "approvals") in day.bq.tables:
        assert published(day, "approvals") == []
    # ... unless a person accepts it with a reason (here: the challenger, for a day).
    reason = "challenger shown to the client for one day, agreed in ticket 77"
    accepted = day.cli("approve", "--run-date", DATE, "--by", "Jane Doe", "--variant",
                       challenger, "--accept-regression", reason, env=day.worker_env)  # fmt: skip
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    # Jenkins' Regress stage (make regress, for a main build: staging and prod) records
    # the champion's golden cases in the storage root of each stack it deploys: Terraform
    # (a recording shim) answers that stack's storage_root, the day's.
    from tests.rehearsal.shims import Shims

    command, stage_env = jenkins_regress_stage()
    assert command.startswith("make regress"), command
    up_to_date = subprocess.run(["make", "-q", "install"], cwd=REPO, capture_output=True)
    assert up_to_date.returncode == 0, "the venv is not installed: make regress would install"
    shims = Shims(day.tmp / "jenkins")
    outputs = day.tmp / "tf-outputs.json"
    outputs.write_text(json.dumps({"storage_root": day.root}))
    env = shims.env(
        {k: v for k, v in day.worker_env.items() if k != "LUIGI_CONFIG_PATH"},
        **stage_env,
        SHIM_TF_OUTPUTS=str(outputs),
        PROGRAMS=str(day.champion),
        PIPELINE_HOME=str(day.tmp / "jenkins-workspace"),
        AWS_DEFAULT_REGION=day.worker_env["AWS_DEFAULT_REGION"],
        AWS_REGION=day.worker_env["AWS_REGION"],
    )
    regress = subprocess.run(["sh", "-c", command], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=240)  # fmt: skip
    assert regress.returncode == 0, regress.stdout + regress.stderr
    assert not shims.refusals(), shims.refusals()
    record = f"{day.root}/regress/{champion}/result.json"
    result = json.loads(get_object(day, record))
    assert [c["passed"] for c in result["cases"]] == [True], result
    # Now the champion is approved and published: one variant per cohort, for everyone.
    approved = day.cli("approve", "--run-date", DATE, "--by", "Jane Doe", env=day.worker_env)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "passed its golden case" in approved.stdout + approved.stderr, approved.stdout
    approvals = day.bq.sql(
        "SELECT cohort, variant, accepted_regression FROM "
        f'"{BQ_PROJECT}"."survey_published"."approvals" ORDER BY approved_at'
    )
    assert sorted(approvals[:COHORTS]) == sorted((c, challenger, reason) for c in day.codes)
    assert sorted(approvals[COHORTS:]) == sorted((c, champion, None) for c in day.codes)
    variants = day.bq.sql(
        f'SELECT DISTINCT variant FROM "{BQ_PROJECT}"."survey_published"."model_estimates"'
    )
    assert variants == [(champion,)]
    latest = day.bq.sql(
        f'SELECT cohort, variant FROM "{BQ_PROJECT}"."survey_published"."v_deliveries"'
    )
    assert sorted(latest) == sorted((c, champion) for c in day.codes)


# ---------------------------------------------------------------------------- f. = a clean day


def duckdb_tables(path: Path) -> dict[str, list[tuple]]:
    from pipeline.warehouse.schema import INGEST_LOG, TABLES

    with duckdb.connect(str(path), read_only=True) as con:
        present = {n for (n,) in con.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'main'").fetchall()}  # fmt: skip
        return {
            n: comparable(n, con.execute(f"SELECT * FROM main.{n}").df())
            for n in [*TABLES, INGEST_LOG.name]
            if n in present
        }


def bigquery_tables(day: Day, dataset: str) -> dict[str, list[tuple]]:
    from pipeline.warehouse.schema import INGEST_LOG, TABLES
    from tests.warehouse.bqfake import _qualified

    present = {t for (_p, d, t) in day.bq.tables if d == dataset}
    return {
        n: comparable(n, day.bq.db.sql(f"SELECT * FROM {_qualified(BQ_PROJECT, dataset, n)}").df())
        for n in [*TABLES, INGEST_LOG.name]
        if n in present
    }


def finish(proc: subprocess.Popen[bytes], timeout: float = 240) -> str:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(output(proc)) from None
    assert code == 0, output(proc)
    return output(proc)


def test_f_the_warehouse_equals_a_clean_run_of_the_same_day_on_both_backends(day: Day) -> None:
    from tests.rehearsal.day import LuigidService

    # The day's delivery loaded BigQuery (the stack's warehouse); its ingest into DuckDB
    # is the same cron command with the other warehouse URI: only the loads run.
    starts = dict(day.agent.starts(day.root))
    day_duckdb = day.tmp / "day.duckdb"
    out = finish(day.cron({"PIPELINE_WAREHOUSE": f"duckdb://{day_duckdb}"}, tag="duckdb"))
    assert f"cohorts: {COHORTS * VARIANTS} done, 0 failed" in out, out
    assert dict(day.agent.starts(day.root)) == starts  # no program ran for it
    # A clean day: a fresh storage root, home, luigid and datasets; the same export from
    # S3, the same variants, nothing killed, nothing broken.
    clean_root = storage_url(prefix="clean")
    clean_luigid = LuigidService(day.tmp / "clean-luigid", env=day.luigid.env).start()
    try:
        env = {
            "PIPELINE_STORAGE_ROOT": clean_root,
            "PIPELINE_HOME": str(day.tmp / "clean-home"),
            "PIPELINE_SCHEDULER_PORT": str(clean_luigid.port),
        }
        clean_duckdb = day.tmp / "clean.duckdb"
        for warehouse in (f"bigquery://{BQ_PROJECT}/clean", f"duckdb://{clean_duckdb}"):
            run = day.cron({**env, "PIPELINE_WAREHOUSE": warehouse}, tag="clean",
                           scheduler=clean_luigid.url)  # fmt: skip
            out = finish(run)
            assert f"cohorts: {COHORTS * VARIANTS} done, 0 failed" in out, out
    finally:
        clean_luigid.kill()
    assert set(day.agent.starts(clean_root).values()) == {1}
    assert len(day.agent.starts(clean_root)) == COHORTS * VARIANTS
    # Compared by values: every row of every staging table but times and ids.
    for kind, got, expected in [
        ("bigquery", bigquery_tables(day, "survey"), bigquery_tables(day, "clean")),
        ("duckdb", duckdb_tables(day_duckdb), duckdb_tables(clean_duckdb)),
    ]:
        assert set(got) == set(expected) and len(expected) >= 8, (kind, sorted(got))
        for name in expected:
            assert expected[name], (kind, name)
            assert got[name] == expected[name], (kind, name)
    runs = duckdb_tables(day_duckdb)["pipeline_runs"]
    assert len(runs) == COHORTS * VARIANTS  # one succeeded run per cohort x variant


# ---------------------------------------------------------------------------- g. metrics


def test_g_the_metrics_terraform_queries_are_the_ones_the_day_sent(day: Day) -> None:
    from pipeline import metrics

    uses = metric_uses(monitored_queries(), ENV)
    assert len(uses) >= 9, uses  # the monitors and the dashboard, read from the HCL
    sent: dict[str, list[dict[str, str]]] = {}
    for name, _value, _kind, tags in day.statsd.metrics():
        sent.setdefault(name.removeprefix(f"{metrics.DEFAULT_NAMESPACE}."), []).append(tags)
    missing = []
    for name, tags in sorted(uses.items()):
        assert name in metrics.METRICS, f"{name}: queried by Terraform, declared nowhere"
        if name == "orphans.reaped":
            # Sent only when the reaper stops something: the day's reaps stopped nothing
            # (the restart adopted every task), so its monitor stays silent, as it should.
            assert name not in sent, sent[name]
            assert set(tags) - {"env"} <= set(metrics.METRICS[name].tags)
            continue
        if name not in sent:
            missing.append(name)
            continue
        for key, values in tags.items():
            seen = {t.get(key) for t in sent[name]} - {None}
            assert seen, f"{name}: no packet tagged {key} (queried: {tags})"
            for value in values - seen:
                # A filter on an outcome the good parts of the day never had (a failed
                # data-quality check is tagged severity:error; passed ones warning): a
                # value the pipeline sends for that outcome, and the day had none.
                vocabulary = metrics.TAGS[key]
                assert isinstance(vocabulary, frozenset) and value in vocabulary, (name, key)
                assert name == "quality.failures" and (key, value) == ("severity", "error")
    assert not missing, f"queried by Terraform, never sent during the day: {missing}"
