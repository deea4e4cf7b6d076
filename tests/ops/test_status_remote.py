"""`pipeline status` from another host: a laptop that knows only the storage root and
luigid's URL sees the cohorts a worker elsewhere is running as RUNNING.

"Another host" is a UTS namespace with its own hostname (``unshare --uts``): the worker's
timing records name the worker's host, so the laptop cannot see its processes, exactly as
on a real second machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import REPO
from tests.ops.conftest import (
    BIN,
    DATE,
    Luigid,
    cohort_codes,
    home_env,
    make_home,
    noop_spec,
    wait_for,
)


def _running_models(luigid: Luigid) -> set[str]:
    query = urllib.parse.urlencode({"data": json.dumps({"status": "RUNNING"})})
    with urllib.request.urlopen(f"{luigid.url}/api/task_list?{query}", timeout=5) as r:
        tasks = json.load(r)["response"]
    return {info["params"]["cohort"] for tid, info in tasks.items() if tid.startswith("RunModel")}


def _status_from_laptop(laptop: Path, worker: Path, luigid: Luigid) -> dict:
    env = {
        **os.environ,
        **home_env(laptop),
        "PIPELINE_STORAGE_ROOT": str(worker / "work"),
        "PIPELINE_WAREHOUSE": f"duckdb:///{worker / 'warehouse.duckdb'}",
    }
    command = [str(BIN / "pipeline"), "status", "--run-date", DATE, "--json",
               "--scheduler-url", luigid.url]  # fmt: skip
    result = subprocess.run(
        ["unshare", "--uts", "sh", "-c", 'hostname laptop-elsewhere && exec "$@"', "sh",
         *command],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_laptop_sees_cohorts_running_on_another_host(tmp_path: Path) -> None:
    luigid = Luigid(tmp_path / "luigid", env={}).start()
    worker = make_home(tmp_path / "worker")
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    codes = cohort_codes(worker)
    spec = noop_spec(worker / "slow.toml", seconds=60)
    run = subprocess.Popen(
        [str(BIN / "pipeline"), "run", "--run-date", DATE, "--program", str(spec),
         "--scheduler-url", luigid.url, "--workers", str(len(codes))],
        cwd=REPO, env={**os.environ, **home_env(worker)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: _running_models(luigid) == set(codes), timeout=120), (
            _running_models(luigid)
        )
        status = _status_from_laptop(laptop, worker, luigid)
        models = {c["cohort"]: c["steps"]["model"] for c in status["cohorts"]}
        assert sorted(models) == sorted(codes)
        for code, model in models.items():
            assert model["state"] == "running", (code, model)
            assert model["executor"] == "local"
            # luigid's own word, not "that process is gone or not on this machine"
            assert "not on this machine" not in (model["message"] or ""), model
        for cohort in status["cohorts"]:
            assert cohort["steps"]["quality"]["state"] == "done"
            assert cohort["steps"]["validate"]["state"] == "pending"
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=120)
        luigid.stop()
