"""The assistant (`pipeline assist`, issue 23) through a real luigid on 127.0.0.1.

Latency: a delivery of 3 cohorts whose first cohort's program fails (it sleeps 3 s, then
exits 3) is run once through luigid; then, ``rounds`` times, the failed RunModel is
forgiven through luigid's API (``forgive_failures``, what the UI's button calls) at a
random moment of the assistant's poll cycle, and the time until luigid lists it RUNNING
is measured (the program then fails again, and the next round waits for FAILED).
``forgive_to_running_s`` is the median (target ≤ 30 s). The assistant runs with the
project's settings: ``[assistant] poll_interval`` (10 s) dominates, a forgiven task
starts within one interval, half of one on average.

Idle: after those rounds (so the assistant has imported and run the pipeline's tasks,
as in production), the same assistant process is sampled every 5 s for ``idle_seconds``
(600): its proportional set size (``/proc/PID/smaps_rollup``: ``idle_pss_mib_median`` /
``_max``, target ≤ 150 MiB) and the CPU it used over the whole window as a share of one
core (``idle_cpu_percent``, target ≤ 1 %). ``load_avg_1m_*`` says how busy the machine
was (other work ran on it meanwhile).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ops.conftest import DATE, Luigid, cohort_codes, home_env, make_home  # noqa: E402
from tests.ops.test_assistant import flaky_spec  # noqa: E402


def _api(server: Luigid, method: str, **data: Any) -> Any:
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"{server.url}/api/{method}?{query}", timeout=10) as response:
        return json.load(response)["response"]


def _status(server: Luigid, task_id: str) -> str:
    found = _api(server, "task_search", task_str=task_id)
    return next((status for status, tasks in found.items() if task_id in tasks), "?")


def _pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def run(rounds: int = 7, idle_seconds: float | None = None) -> dict[str, Any]:
    idle_seconds = float(os.environ.get("BENCH_ASSISTANT_IDLE_SECONDS", idle_seconds or 600))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        home = make_home(tmp / "home", cohorts=3)
        codes = cohort_codes(home)
        cause = tmp / "cause.txt"
        cause.write_text(codes[0])
        spec = flaky_spec(tmp / "flaky.toml", cause, seconds=3)
        env = {**os.environ, **home_env(home)}
        server = Luigid(tmp / "luigid-home", env={"DD_AGENT_HOST": ""}).start()
        assistant = None
        try:
            subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
                 "--scheduler-url", server.url, "--program", str(spec)],
                cwd=REPO, env=env, capture_output=True, timeout=600,
            )  # fmt: skip
            found = _api(server, "task_search", task_str=f"RunModel_{codes[0]}")
            (model,) = [t for tasks in found.values() for t in tasks]
            assert _status(server, model) == "FAILED", found
            assistant = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "assist", "--scheduler-url", server.url],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            time.sleep(3)
            poll = 10.0
            latencies = []
            for _ in range(rounds):
                time.sleep(random.uniform(0, poll))
                started = time.monotonic()
                _api(server, "forgive_failures", task_id=model)
                assert _wait(lambda: _status(server, model) == "RUNNING", timeout=120)
                latencies.append(time.monotonic() - started)
                assert _wait(lambda: _status(server, model) == "FAILED", timeout=120)
            time.sleep(5)
            load_before = os.getloadavg()[0]
            cpu0, t0 = _cpu_seconds(assistant.pid), time.monotonic()
            pss = []
            while time.monotonic() - t0 < idle_seconds:
                pss.append(_pss_mib(assistant.pid))
                time.sleep(5)
            cpu = (_cpu_seconds(assistant.pid) - cpu0) / (time.monotonic() - t0) * 100
            load_after = os.getloadavg()[0]
        finally:
            if assistant is not None and assistant.poll() is None:
                assistant.send_signal(signal.SIGTERM)
                assistant.wait(timeout=60)
            server.stop()
    return {
        "poll_interval_s": poll,
        "forgive_to_running_s": round(statistics.median(latencies), 2),
        "forgive_to_running_runs_s": [round(x, 2) for x in latencies],
        "idle_seconds": round(idle_seconds),
        "idle_pss_mib_median": round(statistics.median(pss), 1),
        "idle_pss_mib_max": round(max(pss), 1),
        "idle_cpu_percent": round(cpu, 3),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(load_after, 2),
    }
