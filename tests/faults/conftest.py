"""Killing real ``pipeline run`` processes at chosen points, and what a restart must show.

A kill point is either *inside* the pipeline — ``PIPELINE_FAULT=<point>`` makes
``pipeline.faults.point`` SIGKILL the run's process group there (between two writes,
inside a warehouse transaction) — or *outside*: a thread of the test watches the storage
root and SIGKILLs the run's process group as soon as a new file matching a glob appears.
Each run starts in a session of its own, so its process group is the whole delivery
(luigi worker and task processes); the local executor's wrappers have sessions of their
own and stop their programs when their worker dies.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import REPO
from tests.ops.conftest import DATE, cohort_codes, home_env, make_home, noop_spec

# Columns that differ between two runs of the same data: times, ids, where it ran.
VOLATILE = {
    "job_id", "attempt", "started_at", "finished_at", "vcpu_seconds", "memory_gib_seconds",
    "cost_usd", "log_uri", "tracking_url", "host", "error", "load_id", "loaded_at",
    "ingested_at", "cleansed_at",
    # the rendered command names the attempt's directory (under each home)
    "command",
}  # fmt: skip


@dataclass
class Delivery:
    """One run date of a sample export in its own PIPELINE_HOME, run again and again."""

    home: Path
    warehouse: str
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 2

    def __post_init__(self) -> None:
        # The program outlasts the wrapper's check of its parent (every second): a run
        # killed as a wrapper starts must not leave a program that finishes anyway (its
        # attempt would be adopted, correctly, and the chain's next point never reached).
        self.spec = noop_spec(self.home / "noop.toml", seconds=1.5)
        self.codes = cohort_codes(self.home)

    @property
    def work(self) -> Path:
        return self.home / "work" / DATE

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
                "--local-scheduler", "--workers", str(self.workers), "--program",
                str(self.spec), "--warehouse", self.warehouse]  # fmt: skip

    def run(
        self, *, fault: str = "", trigger: str = "", timeout: float = 120,
        scheduler: list[str] | None = None,
    ) -> int:  # fmt: skip
        """``pipeline run``; with ``fault`` or ``trigger`` it must die of SIGKILL there.
        Returns the exit status (negative: killed by that signal)."""
        env = {**os.environ, **home_env(self.home), **self.env}
        if fault:
            env["PIPELINE_FAULT"] = fault
        before = set(glob.glob(str(self.work / trigger))) if trigger else set()
        command = self.command()
        if scheduler:  # a luigid instead of --local-scheduler
            command = [a for a in command if a != "--local-scheduler"] + scheduler
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        stop = threading.Event()
        if trigger:

            def watch() -> None:
                while not stop.is_set() and proc.poll() is None:
                    if set(glob.glob(str(self.work / trigger))) - before:
                        os.killpg(proc.pid, signal.SIGKILL)
                        return
                    time.sleep(0.005)

            threading.Thread(target=watch, daemon=True).start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            stop.set()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.last_output = out
        return proc.returncode

    def leftovers(self) -> list[str]:
        """Command lines of processes still running with this delivery's PIPELINE_HOME."""
        marker = f"PIPELINE_HOME={self.home}\0".encode()
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in environ + b"\0" and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        return found

    def wait_no_leftovers(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes left after the kill: {left}"

    def program_runs(self) -> Counter[str]:
        """Per cohort: attempts whose program ran to its end (exit 0 in the manifest)."""
        done: Counter[str] = Counter()
        for manifest in self.work.glob("model/*/*/attempts/*/out/manifest.json"):
            if json.loads(manifest.read_text()).get("exit_code") == 0:
                done[manifest.relative_to(self.work).parts[1]] += 1
        return done


def comparable(name: str, frame: pd.DataFrame) -> list[tuple]:
    """A table's rows without volatile columns, sorted; ``pipeline_runs`` keeps its
    successful rows (the others record killed attempts), ``ingest_log`` one row per
    distinct load (a killed run's loads were logged before they were replaced) of every
    table but ``pipeline_runs``, whose count includes the abandoned rows."""
    if name == "pipeline_runs" and len(frame):
        frame = frame[frame["status"] == "succeeded"]
    if name == "ingest_log" and len(frame):  # how many pipeline_runs rows: abandoned too
        frame = frame[frame["table_name"] != "pipeline_runs"]
    frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE])
    rows = {tuple(map(_plain, r)) for r in frame.itertuples(index=False)}
    if name != "ingest_log":
        assert len(rows) == len(frame), f"{name}: duplicate rows"
    return sorted(rows, key=repr)


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bool | np.bool_ | str):
        return value
    if isinstance(value, int | float | np.number):  # int64 and float64 (NULLs) alike
        return round(float(value), 9)
    return str(value)


def make_delivery(path: Path, warehouse: str, **env: str) -> Delivery:
    home = make_home(path, cohorts=2, respondents=120, seed=7)
    return Delivery(home, warehouse, env=env)
