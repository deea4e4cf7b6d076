"""Errors of the ``pipeline`` command as people meet them: the real console script in a
subprocess, one line naming the culprit, the documented exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PIPELINE = Path(sys.executable).parent / "pipeline"


def pipeline(*args: str, env: dict[str, str] | None = None, **kwargs):
    streams = kwargs or {"capture_output": True}
    return subprocess.run(
        [str(PIPELINE), *args],
        cwd=REPO, env={**os.environ, **(env or {})}, text=True, timeout=300, **streams,
    )  # fmt: skip


def assert_one_error_line(result: subprocess.CompletedProcess[str], *culprits: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline "), lines
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])


# --- pipeline sample-data ---------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"), [("--cohorts", "0"), ("--respondents", "0"), ("--cohorts", "-2")]
)
def test_sample_data_refuses_counts_below_one(tmp_path: Path, flag: str, value: str) -> None:
    result = pipeline("sample-data", "--out", str(tmp_path / "raw"), flag, value)
    assert_one_error_line(result, flag, value)
    assert not (tmp_path / "raw").exists()


def test_sample_data_names_the_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "passwd"
    blocker.write_text("not a directory\n")
    result = pipeline("sample-data", "--out", str(blocker / "x"))
    assert_one_error_line(result, str(blocker), "not a directory")
    result = pipeline("sample-data", "--out", "/etc/passwd/x")
    assert_one_error_line(result, "/etc/passwd")


def test_sample_data_refuses_a_non_empty_directory_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    result = pipeline("sample-data", "--out", str(out), "--cohorts", "2", "--respondents", "50")
    assert_one_error_line(result, str(out), "not empty", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]

    result = pipeline("sample-data", "--out", str(out), "--cohorts", "2", "--respondents", "50",
                      "--force")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "cohorts.csv").is_file() and (out / "keep.txt").read_text() == "mine\n"
    assert "--force" in pipeline("sample-data", "--help").stdout


def test_sample_data_ends_with_a_short_summary(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    result = pipeline("sample-data", "--out", str(out), "--cohorts", "9", "--respondents", "300")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"wrote a sample raw export to {out} (5 files):"
    assert any(line.split()[0] == "responses/wave2.csv" and "cp932" in line for line in lines)
    assert "respondents in 9 cohorts: diabetes, hypertension" in lines[-1]
    assert lines[-1].endswith("and 3 more")
    assert "{" not in result.stdout and max(len(line) for line in lines) < 130


# --- a reader that stops early ----------------------------------------------------


def pin_run_date(home: Path, date: str = "2026-11-22") -> None:
    """Make the date one that has run (its input pin exists): status refuses dates that
    never ran, and these tests need its (pending) table, not a full run."""
    pin = home / "work" / date / "cleanse" / "inputs.json"
    pin.parent.mkdir(parents=True)
    pin.write_text("{}\n")


def test_status_into_a_closed_pipe_exits_141_quietly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = pipeline("sample-data", "--out", str(home / "raw"), "--cohorts", "3",
                    "--respondents", "50")  # fmt: skip
    assert made.returncode == 0, made.stderr
    pin_run_date(home)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already exited: every write fails with EPIPE
    try:
        result = pipeline(
            "status", "--run-date", "2026-11-22", "--json",
            env={"PIPELINE_HOME": str(home)}, stdout=write_end, stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert result.stderr == "", result.stderr


def test_status_piped_into_head_through_a_shell(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = pipeline("sample-data", "--out", str(home / "raw"), "--cohorts", "40",
                    "--respondents", "100")  # fmt: skip
    assert made.returncode == 0, made.stderr
    pin_run_date(home)
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{PIPELINE}' status --run-date 2026-11-22 --json "
         "| head -1"],
        cwd=REPO, env={**os.environ, "PIPELINE_HOME": str(home)}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.stdout == "{\n"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode in (0, 141)  # 0 when all of it fit in the pipe before head left
