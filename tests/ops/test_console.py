"""The console of a run is for people: a 4-cohort `pipeline run` shows progress and the
summary in at most 40 lines, under a pseudo-terminal (what a person sees, rendered by a
terminal emulator) and under a pipe (cron, Jenkins); luigi's own log is in the file the
summary names."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pyte

from tests.conftest import REPO
from tests.ops.conftest import DATE, home_env, make_home, noop_spec

MAX_LINES = 40


def run_args(home: Path, spec: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--program",
            str(spec), "--local-scheduler", "--workers", "3"]  # fmt: skip


def log_file(text: str) -> Path:
    match = re.search(r"luigi's log of this run: (\S+)", text)
    assert match, text
    return Path(match[1])


def test_under_a_pipe(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=4, respondents=200)
    spec = noop_spec(tmp_path / "noop.toml")
    result = subprocess.run(
        run_args(home, spec), cwd=REPO, env={**os.environ, **home_env(home)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = output.strip().splitlines()
    assert len(lines) <= MAX_LINES, output
    assert "cohorts: 4 done, 0 failed" in output
    assert not any(line.startswith(("DEBUG", "INFO")) for line in lines), output
    assert re.search(r"^\d\d:\d\d:\d\d \S+ model started$", output, re.M), output
    log = log_file(output).read_text()
    assert "DEBUG" in log and "Checking if RunModel" in log  # luigi's full log


def test_under_a_terminal(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=4, respondents=200)
    spec = noop_spec(tmp_path / "noop.toml")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        run_args(home, spec), cwd=REPO,
        env={**os.environ, **home_env(home), "COLUMNS": "120", "LINES": "60", "TERM": "xterm"},
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    screen = pyte.Screen(120, 200)  # taller than the output: nothing scrolls away
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n"))
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert len(shown) <= MAX_LINES, "\n".join(shown)
    text = "\n".join(shown)
    assert "cohorts: 4 done, 0 failed" in text
    # The live table ends showing every cohort done at every step.
    table = [line for line in shown if re.match(r"^\S+( +done){4}$", line)]  # 4 steps
    assert len(table) == 4, text
    assert "DEBUG" not in text and "Traceback" not in text
    assert "DEBUG" in log_file(raw).read_text()
