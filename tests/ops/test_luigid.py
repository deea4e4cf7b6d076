"""A real luigid: the tasks report to it (status, progress, tracking URL), its visualiser
shows them in headless Chromium, it records task history and safe scheduler metrics, and
a SIGKILLed luigid loses nothing that matters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import metrics
from tests.conftest import REPO
from tests.ops.conftest import (
    DATE,
    DogStatsdSink,
    Luigid,
    cohort_codes,
    free_port,
    home_env,
    make_home,
    noop_spec,
    pipeline,
    terminate_luigid,
    wait_for,
)

FAMILIES = ("CleanseSurvey", "IngestSurvey", "RunModel", "ValidateResults", "IngestResults")


def api(server: Luigid, method: str, **data: Any) -> Any:
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"{server.url}/api/{method}?{query}", timeout=10) as response:
        return json.load(response)["response"]


def tasks(server: Luigid) -> dict[str, dict[str, Any]]:
    """Every task luigid knows for DATE, by task id."""
    found = api(server, "task_search", task_str=DATE.replace("-", "_"))
    return {task_id: info for by_status in found.values() for task_id, info in by_status.items()}


def start_run(home: Path, server: Luigid, spec: Path, workers: int, **env: str):
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
         "--scheduler-url", server.url, "--workers", str(workers), "--program", str(spec)],
        cwd=REPO, env={**os.environ, **home_env(home, **env)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@dataclass
class Live:
    home: Path
    spec: Path
    server: Luigid
    sink: DogStatsdSink
    run: subprocess.Popen[str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A run of 3 cohorts in flight through luigid (each program takes 15 s), luigid and
    the workers sending DogStatsD metrics to a UDP socket."""
    home = make_home(tmp_path_factory.mktemp("live"))
    spec = noop_spec(home / "slow.toml", seconds=15)
    sink = DogStatsdSink()
    server = Luigid(home / "luigid-home", env=sink.env()).start()
    run = start_run(home, server, spec, 3, **sink.env())
    yield Live(home, spec, server, sink, run)
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
    server.stop()
    sink.close()


def running_models(server: Luigid) -> list[dict[str, Any]]:
    return [t for t in tasks(server).values()
            if t["name"] == "RunModel" and t["status"] == "RUNNING"]  # fmt: skip


def test_tasks_report_status_progress_and_logs(live: Live) -> None:
    codes = cohort_codes(live.home)
    assert wait_for(lambda: len(running_models(live.server)) == len(codes), timeout=60)
    assert wait_for(
        lambda: all("running locally" in (t["status_message"] or "")
                    for t in running_models(live.server)), timeout=20,
    )  # fmt: skip
    known = tasks(live.server)
    for task in running_models(live.server):
        assert "running locally" in task["status_message"], task
        assert task["progress_percentage"] == 5
        url = task["tracking_url"]
        assert url.startswith("file://") and Path(url.removeprefix("file://")).is_file()
    (cleanse,) = [t for t in known.values() if t["name"] == "CleanseSurvey"]
    assert cleanse["status"] == "DONE"
    assert "cleansed" in cleanse["status_message"] and cleanse["progress_percentage"] == 100
    log = Path(cleanse["tracking_url"].removeprefix("file://"))
    assert "cleansed" in log.read_text()

    status = pipeline(live.home, "status", "--run-date", DATE, "--program", str(live.spec),
                      "--scheduler-url", live.server.url, "--json")  # fmt: skip
    assert status.returncode == 0, status.stderr
    cohorts = json.loads(status.stdout)["cohorts"]
    assert {c["steps"]["model"]["state"] for c in cohorts} == {"running"}
    assert all("running locally" in c["steps"]["model"]["message"] for c in cohorts)
    assert {c["executor"] for c in cohorts} == {"local"}


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def test_visualiser_shows_our_tasks(live: Live, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (`make browser` installs Debian's package)")
    assert wait_for(lambda: running_models(live.server), timeout=60)  # during the run
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", "--window-size=1400,1000",
             "--virtual-time-budget=5000"]  # fmt: skip
    page = f"{live.server.url}/static/visualiser/index.html"
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([*flags, f"--user-data-dir={profile}", "--dump-dom", page],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    for family in FAMILIES:
        assert family in dom.stdout, family
    # The screenshot kept for the README: PIPELINE_UI_SCREENSHOT=docs/luigid-ui.png refreshes it.
    shot = Path(os.environ.get("PIPELINE_UI_SCREENSHOT") or tmp_path / "luigid-ui.png").absolute()
    with tempfile.TemporaryDirectory() as profile:
        taken = subprocess.run([*flags, f"--user-data-dir={profile}", f"--screenshot={shot}", page],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_run_ends_with_history_and_safe_scheduler_metrics(live: Live) -> None:
    out, _ = live.run.communicate(timeout=120)
    assert live.run.returncode == 0, out[-3000:]
    codes = cohort_codes(live.home)
    done = tasks(live.server)
    assert {t["status"] for t in done.values()} == {"DONE"}
    for task in done.values():
        if task["name"] != "Deliver":
            assert task["status_message"], task

    with sqlite3.connect(live.server.history_db) as db:
        names = dict(db.execute("SELECT name, count(*) FROM tasks GROUP BY name").fetchall())
    assert names["RunModel"] == len(codes) and names["CleanseSurvey"] == 1

    assert wait_for(
        lambda: any(m[0] == "survey_pipeline.scheduler.task.done" and m[3].get("step") == "ingest"
                    for m in live.sink.metrics()), timeout=10,
    )  # fmt: skip
    scheduler = [m for m in live.sink.metrics() if m[0].startswith("survey_pipeline.scheduler.")]
    started = [m for m in scheduler if m[0].endswith(".started")]
    # Counted once by luigid (the workers talk to it, not to a local scheduler).
    assert len([m for m in started if m[3]["task_family"] == "runmodel"]) == len(codes)
    for name, _value, _kind, tags in scheduler:
        declared = metrics.METRICS[name.removeprefix("survey_pipeline.")]
        assert set(tags) <= set(declared.tags), (name, tags)
    assert {m[3].get("cohort") for m in started if m[3]["step"] == "model"} == set(codes)
    # Names and tags only (name:value|type|#tags): a value's digits may hold "2026".
    described = "\n".join(
        f"{line.split(':', 1)[0]}|{line.partition('|#')[2]}" for line in live.sink.lines
    )
    for leak in (str(live.home), "duckdb", "slow.toml", "2026"):
        assert leak not in described.replace("warehouse:duckdb", ""), leak


def test_make_luigid_keeps_state_and_history_under_pipeline_home(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["make", "-o", "install", "luigid", f"LUIGID_PORT={port}", f"PIPELINE_HOME={tmp_path}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    server = Luigid(tmp_path, env={}, port=port)
    try:
        assert wait_for(lambda: _answers(server), timeout=30), proc.stdout
    finally:
        # Ctrl-C / a service stop: a clean shutdown
        terminate_luigid(proc, server.url, timeout=30, group=True)
    assert (tmp_path / "luigid" / "state.pickle").is_file()
    assert (tmp_path / "luigid" / "task-history.sqlite").is_file()
    assert "Scheduler starting up" in server.log.read_text()


def _answers(server: Luigid) -> bool:
    try:
        api(server, "task_list")
    except OSError:
        return False
    return True


def test_sigkilled_luigid_loses_nothing_that_matters(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    codes = cohort_codes(home)
    spec = noop_spec(tmp_path / "noop.toml", seconds=2)
    server = Luigid(tmp_path / "luigid-home", env={}).start()
    try:
        run = start_run(home, server, spec, 1)  # one at a time: the kill lands mid-run
        work = home / "work" / DATE
        assert wait_for(lambda: list(work.glob("model/*/*/run.json")), timeout=90)
        server.kill()
        assert not server.state_path.exists()  # luigid saves its state only on shutdown
        done_at_kill = {p.parts[-3]: p.parent / "results.parquet"
                        for p in work.glob("model/*/*/run.json")}  # fmt: skip
        stamps = {code: path.stat().st_mtime_ns for code, path in done_at_kill.items()}
        cleansed = (work / "cleanse" / "summary.json").stat().st_mtime_ns
        server.start()  # restarted (ECS would), knowing nothing of the run
        # The worker rides out the restart ([core] rpc_retry_*), finds that the new luigid
        # never heard of its run, registers what is left again and finishes the delivery.
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, out[-3000:]
        assert f"cohorts: {len(codes)} done, 0 failed" in out

        again = pipeline(home, "run", "--run-date", DATE, "--scheduler-url", server.url,
                         "--program", str(spec), "--workers", "2")  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"cohorts: {len(codes)} done, 0 failed" in again.stdout
    finally:
        server.stop()
    # Nothing done was done again: one program run per cohort, untouched outputs.
    for code in codes:
        assert len(list(work.glob(f"model/{code}/*/attempts/*"))) == 1, code
    for code, path in done_at_kill.items():
        assert path.stat().st_mtime_ns == stamps[code]
    assert (work / "cleanse" / "summary.json").stat().st_mtime_ns == cleansed
