"""The Makefile: what `make run` installs, and what `make help` prints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def pip_installs(dry_run: str) -> list[str]:
    return [
        line
        for line in dry_run.splitlines()
        if "pip install" in line and "--upgrade pip" not in line
    ]


def test_run_installs_only_the_runtime_and_test_adds_the_tools() -> None:
    # -B: as in a fresh clone; -n: print the commands without running them.
    run = pip_installs(make("-n", "-B", "run"))
    assert run and all("[test" not in line and "lint]" not in line for line in run), run
    assert any("-e . -e programs/estimator" in line for line in run), run
    for target in ("test", "lint"):
        dev = pip_installs(make("-n", "-B", target))
        assert any("'.[test,lint]'" in line for line in dev), (target, dev)


def test_help_prints_no_unexpanded_make_variables() -> None:
    text = make("help")
    assert "install" in text and "images" in text
    assert "$(" not in text, [line for line in text.splitlines() if "$(" in line]
