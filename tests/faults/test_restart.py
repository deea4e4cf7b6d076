"""What a restart after a SIGKILL must show: finished programs adopted, not run again;
``pipeline status`` never showing a dead task as running (with a real luigid too)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import duckdb
import psutil

from pipeline.status import alive
from tests.conftest import run_cli
from tests.faults.conftest import make_delivery
from tests.ops.conftest import DATE, Luigid, home_env


def test_kill_after_the_attempt_record_adopts_it_instead_of_running_again(
    tmp_path: Path,
) -> None:
    scheduler = Luigid(tmp_path / "luigid", env={"DD_AGENT_HOST": ""}).start()
    try:
        delivery = make_delivery(tmp_path / "d", "")
        delivery.warehouse = f"duckdb://{delivery.home / 'w.duckdb'}"
        remote = ["--scheduler-url", scheduler.url]
        # Killed right after a program's attempts/<id>/run.json, before results.parquet.
        assert delivery.run(fault="collect.attempt-run", scheduler=remote) == -9
        delivery.wait_no_leftovers()
        (record,) = delivery.work.glob("model/*/*/attempts/*/run.json")
        killed = record.relative_to(delivery.work).parts[1]
        assert not (record.parent.parent.parent / "results.parquet").exists()

        # Neither the dead worker's record nor luigid's stale RUNNING make it "running".
        shown = run_cli("status", "--run-date", DATE, "--program", str(delivery.spec),
                        "--warehouse", delivery.warehouse, "--json", *remote,
                        env=home_env(delivery.home))  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        states = {row["cohort"]: row for row in json.loads(shown.stdout)["cohorts"]}
        model = states[killed]["steps"]["model"]
        assert model["state"] != "running", model
        assert all(row["state"] != "running" for row in states.values())

        # luigid hands the dead worker's tasks out again only after its
        # worker_disconnect_delay: the restart here uses the local scheduler.
        assert delivery.run() == 0, delivery.last_output[-3000:]
        delivery.wait_no_leftovers()
    finally:
        scheduler.stop()
    assert delivery.program_runs() == {c: 1 for c in delivery.codes}  # none ran twice
    assert "adopting finished attempt" in _task_logs(delivery.home)
    with duckdb.connect(str(delivery.home / "w.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT cohort, status FROM pipeline_runs ORDER BY ALL").fetchall()
    # One row for the adopted program run; a cohort whose program the kill cut short
    # also has its abandoned attempt, never a second success.
    assert [r for r in rows if r[0] == killed] == [(killed, "succeeded")]
    assert sorted(c for c, s in rows if s == "succeeded") == sorted(delivery.codes)
    assert {s for _c, s in rows} <= {"succeeded", "abandoned"}


def _task_logs(home: Path) -> str:
    return "".join(p.read_text() for p in (home / "work" / DATE / "logs" / "tasks").glob("*.log"))


def test_alive_is_false_for_a_killed_process_and_a_reused_pid() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    record = {"host": __import__("socket").gethostname(), "pid": proc.pid,
              "started_at": "2999-01-01T00:00:00+00:00"}  # fmt: skip
    assert alive(record)
    # The same pid recorded by a task that started before this process existed: reused.
    assert not alive({**record, "started_at": "2000-01-01T00:00:00+00:00"})
    proc.kill()
    deadline = time.monotonic() + 5  # a zombie until reaped: dead all the same
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(record)
    proc.wait()
    assert not alive(record)
