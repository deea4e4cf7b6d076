"""Local program runs of a real ``pipeline run`` (every task a thread of its worker):
``[resources] model_slots`` bounds the programs at once, programs take no ``--workers``
slot, and SIGTERM stops every running program and its wrapper."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pipeline.sampledata import generate
from tests.conftest import REPO, run_cli

NOOP = REPO / "bench" / "programs" / "noop.py"
DATE = "2026-11-22"


def overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    """The most intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = current = 0
    for _when, step in events:
        current += step
        most = max(most, current)
    return most


def noop_spec(tmp_path: Path, seconds: float) -> Path:
    spec = tmp_path / "noop.toml"
    spec.write_text(
        'name = "noop"\nversion = "1.0.0"\n'
        f'command = ["python", "{NOOP}", "{{input}}", "{{output_dir}}", "--seconds", "{seconds}"]\n'
        'input_format = "csv"\ntimeout = "5m"\n[outputs]\nresults = "estimates.csv"\n'
    )
    return spec


def test_model_slots_bound_programs_not_workers(pipeline_home: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, cohorts=6, respondents=300, seed=3)
    spec = noop_spec(tmp_path, 1.5)
    override = tmp_path / "slots.cfg"
    override.write_text("[resources]\nmodel_slots = 2\n")
    proc = run_cli(
        "run", "--run-date", DATE, "--raw", str(raw), "--program", str(spec),
        "--workers", "1", "--local-scheduler",
        env={"LUIGI_CONFIG_PATH": str(override)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [
        json.loads(p.read_text())
        for p in (pipeline_home / "work" / DATE / "model").glob("*/*/run.json")
    ]
    assert len(runs) == 6
    intervals = [
        (dt.datetime.fromisoformat(r["started_at"]), dt.datetime.fromisoformat(r["finished_at"]))
        for r in runs
    ]
    assert overlap(intervals) == 2


def test_sigterm_stops_every_program_and_wrapper(pipeline_home: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, cohorts=3, respondents=200, seed=4)
    spec = noop_spec(tmp_path, 300)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--raw", str(raw),
         "--program", str(spec), "--local-scheduler"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(programs(tmp_path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(programs(tmp_path)) == 3, "the three programs never ran at once"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.monotonic() - started < 30
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert "interrupted: the programs it was running were stopped; the same command" in out
    deadline = time.monotonic() + 15
    while (programs(tmp_path) or wrappers(pipeline_home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert programs(tmp_path) == [] and wrappers(pipeline_home) == []
    # Nothing claims the stopped programs' results.
    assert list((pipeline_home / "work" / DATE / "model").glob("*/*/results.parquet")) == []


def programs(tmp_path: Path) -> list[psutil.Process]:
    """Live no-op programs started for this test (their input lives under its home)."""
    return [p for p in _live() if str(NOOP) in p.info["cmdline"] and
            any(str(tmp_path) in part for part in p.info["cmdline"])]  # fmt: skip


def wrappers(home: Path) -> list[psutil.Process]:
    return [p for p in _live() if "pipeline.wrapper" in p.info["cmdline"] and
            any(str(home) in part for part in p.info["cmdline"])]  # fmt: skip


def _live() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["cmdline"] and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found
