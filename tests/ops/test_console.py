"""The console of a run is for people: a 4-cohort `pipeline run` shows progress and the
summary in at most 40 lines, under a pseudo-terminal (what a person sees, rendered by a
terminal emulator) and under a pipe (cron, Jenkins); luigi's own log is in the file the
summary names."""

from __future__ import annotations

import datetime as dt
import io
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


def in_a_terminal(
    args: list[str], env: dict[str, str], rows: int = 200
) -> tuple[int, str, list[str]]:
    """Run ``args`` under a pseudo-terminal 120 columns wide: its exit code, what it wrote
    and the non-empty lines a terminal emulator shows at the end (``rows`` tall, so
    nothing scrolls away)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, cwd=REPO,
        env={**os.environ, **env, "COLUMNS": "120", "LINES": "60", "TERM": "xterm"},
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
    code = proc.wait(timeout=60)
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    screen = pyte.Screen(120, rows)
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n"))
    return code, raw, [line.rstrip() for line in screen.display if line.strip()]


def test_under_a_terminal(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=4, respondents=200)
    spec = noop_spec(tmp_path / "noop.toml")
    code, raw, shown = in_a_terminal(run_args(home, spec), home_env(home))
    assert code == 0, raw
    assert len(shown) <= MAX_LINES, "\n".join(shown)
    text = "\n".join(shown)
    assert "cohorts: 4 done, 0 failed" in text
    # The live table ends showing every cohort done at every step.
    table = [line for line in shown if re.match(r"^\S+( +done){4}$", line)]  # 4 steps
    assert len(table) == 4, text
    assert "DEBUG" not in text and "Traceback" not in text
    assert "DEBUG" in log_file(raw).read_text()


def test_variants_share_the_cohort_steps(pipeline_home: Path, tmp_path: Path) -> None:
    """With two variants a row is `cohort [variant]`; the data-quality gate, one task of the
    cohort, shows on both rows and is told once; a task found complete when scheduled
    shows the steps before it done (luigi does not look behind it)."""
    from pipeline.console import STEPS, RunConsole
    from pipeline.tasks import CheckData, IngestResults, RunModel

    a = str(noop_spec(tmp_path / "a.toml"))
    b = str(noop_spec(tmp_path / "b.toml", seconds=1))  # another command: another variant
    out = io.StringIO()
    console = RunConsole(tmp_path / "run.log", variants=True, out=out)
    date = dt.date.fromisoformat(DATE)
    done = IngestResults(run_date=date, cohort="diabetes", program=a)
    models = [RunModel(run_date=date, cohort="asthma", program=p) for p in (a, b)]
    check = CheckData(run_date=date, cohort="asthma")
    console.scheduled(done, "DONE")
    for task in (*models, check):
        console.scheduled(task, "PENDING")
    console.finished(check, "FAILED", "DataQualityFailed: cohort asthma: too few rows\nmore")

    assert console.rows[f"diabetes [{done.spec.slug}]"].steps == dict.fromkeys(STEPS, "done")
    names = [f"asthma [{task.spec.slug}]" for task in models]
    assert sorted(console.rows) == sorted([*names, f"diabetes [{done.spec.slug}]"])
    for name in names:
        assert console.rows[name].steps == {**dict.fromkeys(STEPS, "pending"), "quality": "failed"}
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d asthma quality FAILED: DataQualityFailed: cohort asthma: too few rows",
        lines[0],
    )
    console.started(models[1])
    assert out.getvalue().splitlines()[-1].endswith(f" {names[1]} model started")


def test_the_pipelines_warnings_reach_the_console_once_each(tmp_path: Path) -> None:
    """A warning of the pipeline's own (a run waiting for luigid, a cloud program submitted
    again) is shown as it happens, its first line, each text once; luigi's and other
    libraries' log lines stay in the file, which has every warning."""
    import logging

    from pipeline.console import MAX_WARNINGS, RunConsole

    out = io.StringIO()
    console = RunConsole(tmp_path / "run.log", out=out)
    waiting = "12 task(s) of this run are RUNNING in luigid under worker(s) W: waiting"
    with console.capturing():
        logging.getLogger("pipeline.worker").warning(waiting)
        logging.getLogger("pipeline.worker").warning(waiting)
        logging.getLogger("luigi-interface").warning("luigi's own warning")
        logging.getLogger("botocore").error("a library's error")
        logging.getLogger("pipeline.executors").info("an info line")
        try:
            raise OSError("disk full")
        except OSError:
            logging.getLogger("pipeline.executors").warning("could not write x", exc_info=True)
    lines = out.getvalue().splitlines()
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in lines] == [
        f"warning: {waiting}",
        "warning: could not write x",
    ], lines
    log = (tmp_path / "run.log").read_text()
    assert log.count(waiting) == 2 and "luigi's own warning" in log and "disk full" in log

    # A flood (a luigid down for long, every task's status) stops at MAX_WARNINGS lines.
    out = io.StringIO()
    console = RunConsole(tmp_path / "flood.log", out=out)
    with console.capturing():
        for n in range(3 * MAX_WARNINGS):
            logging.getLogger("pipeline.worker").warning("luigid did not take status of %d", n)
    lines = out.getvalue().splitlines()
    assert len(lines) == MAX_WARNINGS + 1, lines
    assert lines[-1].endswith("warning: more warnings: see the run's log")
